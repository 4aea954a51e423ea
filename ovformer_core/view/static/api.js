// Shared by both pages: API calls carrying the access token, track colours, small DOM helpers.

const tokenMeta = document.querySelector('meta[name="ovformer-token"]');
const TOKEN = tokenMeta ? tokenMeta.content : "";

/** Call the viewer's API; resolves to parsed JSON (or the Response with raw), rejects with the server's one-line message. */
export async function api(path, { method = "GET", json, body, headers = {}, raw = false } = {}) {
  const sent = { ...headers, "X-OVFormer-Token": TOKEN };
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers: sent, body, cache: "no-store" });
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    if (type.includes("json")) {
      const data = await response.json();
      if (data && data.error) message = data.error;
    }
    throw new Error(message);
  }
  if (raw) return response;
  return type.includes("json") ? response.json() : response.text();
}

/** Stable colour of a track id: hues spread by the golden angle. Returns [r, g, b] in 0..255. */
export function colorOf(trackId) {
  const hue = (trackId * 137.508) % 360;
  const s = 0.85;
  const l = 0.52;
  const k = (n) => (n + hue / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [Math.round(255 * f(0)), Math.round(255 * f(8)), Math.round(255 * f(4))];
}

export function cssColor(rgb) {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

/** Create an element: el("td", {class: "x", onclick: fn}, "text", child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
