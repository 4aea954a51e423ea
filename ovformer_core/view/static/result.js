// The result page: source frames with the masks drawn from their RLE, the track list with its
// timeline, filters, corrections (rename, delete, merge, undo) and saving the review.
import { api, colorOf, cssColor, el } from "/static/api.js";
import { paintRuns, runLengths } from "/static/rle.js";

const RESULT_ID = document.querySelector('meta[name="ovformer-result"]').content;
const CHUNK = 64; // frames of masks per request
const MASK_CHUNKS_KEPT = 16;
const FRAMES_KEPT = 96;
const ALPHA = 0.5; // mask opacity over the frame
const PREFETCH = 3;
const PREFETCH_PLAYING = 8;

const state = {
  info: null,
  pos: 0,
  edits: [],
  savedEdits: [],
  revision: 0,
  selected: null,
  playing: false,
  filterCategory: "",
  minScore: 0,
  view: null,
  boxes: [],
};
const viewer = { state, colorOf, drawCount: 0, drawnPos: -1, firstDrawnAt: null, show, select };
window.viewer = viewer;

const frameCanvas = document.getElementById("frame");
const frameCtx = frameCanvas.getContext("2d", { willReadFrequently: true });
const labelCanvas = document.getElementById("labels");
const labelCtx = labelCanvas.getContext("2d");
const overlayCanvas = document.createElement("canvas");
const overlayCtx = overlayCanvas.getContext("2d");
let overlay = null;
let labelMap = null;

const frames = new Map(); // position -> Promise<ImageBitmap|null>
const chunks = new Map(); // chunk index -> Promise<Array<Array<[trackId, counts]>>>

// ---- effective tracks: the original table with the edits applied (as the server applies them) ----

function mergeSpans(a, b) {
  const all = [...a, ...b].map((s) => s.slice()).sort((x, y) => x[0] - y[0]);
  const out = [];
  for (const span of all) {
    const last = out[out.length - 1];
    if (last && span[0] <= last[1] + 1) last[1] = Math.max(last[1], span[1]);
    else out.push(span);
  }
  return out;
}

function computeView() {
  const categories = state.info.categories.map((c) => ({ ...c }));
  const tracks = new Map();
  for (const t of state.info.tracks) {
    tracks.set(t.track_id, { ...t, members: [t.track_id], spans: t.spans.map((s) => s.slice()) });
  }
  for (const edit of state.edits) {
    const track = tracks.get(edit.track_id);
    if (!track) continue;
    if (edit.op === "rename") {
      let category = categories.find((c) => c.name === edit.category_name);
      if (!category) {
        category = { id: Math.max(0, ...categories.map((c) => c.id)) + 1, name: edit.category_name };
        categories.push(category);
      }
      track.category_name = category.name;
      track.category_id = category.id;
    } else if (edit.op === "delete") {
      tracks.delete(edit.track_id);
    } else if (edit.op === "merge") {
      const target = tracks.get(edit.into);
      if (!target) continue;
      target.members.push(...track.members);
      target.score = Math.max(target.score, track.score);
      target.spans = mergeSpans(target.spans, track.spans);
      target.frames = target.spans.reduce((n, s) => n + s[1] - s[0] + 1, 0);
      tracks.delete(edit.track_id);
    }
  }
  const owner = new Map();
  for (const track of tracks.values()) {
    track.first = track.spans.length ? track.spans[0][0] : null;
    for (const member of track.members) owner.set(member, track.track_id);
  }
  state.view = { tracks, owner, categories };
  if (state.selected !== null && !tracks.has(state.selected)) state.selected = null;
}

function visible(track) {
  return (!state.filterCategory || track.category_name === state.filterCategory) && track.score >= state.minScore;
}

// ---- data: frames and masks, cached and fetched ahead ----

function frameBitmap(pos) {
  if (!state.info.video.available) return Promise.resolve(null);
  let pending = frames.get(pos);
  if (!pending) {
    pending = api(`/api/results/${RESULT_ID}/frames/${pos}`, { raw: true })
      .then((response) => response.blob())
      .then((blob) => createImageBitmap(blob))
      .catch((err) => {
        frames.delete(pos);
        setStatus(`frame ${pos}: ${err.message}`);
        return null;
      });
    frames.set(pos, pending);
    while (frames.size > FRAMES_KEPT) {
      const [oldest, old] = frames.entries().next().value;
      frames.delete(oldest);
      old.then((bitmap) => bitmap && bitmap.close());
    }
  }
  return pending;
}

function maskChunk(index) {
  let pending = chunks.get(index);
  if (!pending) {
    const start = index * CHUNK;
    const stop = Math.min(start + CHUNK, state.info.num_frames);
    pending = api(`/api/results/${RESULT_ID}/masks?start=${start}&stop=${stop}`)
      .then((data) => data.frames)
      .catch((err) => {
        chunks.delete(index);
        setStatus(`masks: ${err.message}`);
        return [];
      });
    chunks.set(index, pending);
    while (chunks.size > MASK_CHUNKS_KEPT) chunks.delete(chunks.keys().next().value);
  }
  return pending;
}

async function masksAt(pos) {
  const chunk = await maskChunk(Math.floor(pos / CHUNK));
  return chunk[pos % CHUNK] || [];
}

function prefetch(pos) {
  const ahead = state.playing ? PREFETCH_PLAYING : PREFETCH;
  const last = state.info.num_frames - 1;
  for (let p = pos + 1; p <= Math.min(last, pos + ahead); p += 1) frameBitmap(p);
  if (pos > 0) frameBitmap(pos - 1);
  if (pos % CHUNK >= CHUNK - 16 && (Math.floor(pos / CHUNK) + 1) * CHUNK <= last) maskChunk(Math.floor(pos / CHUNK) + 1);
}

// ---- drawing ----

let drawSeq = 0;

async function show(pos) {
  const last = state.info.num_frames - 1;
  pos = Math.max(0, Math.min(last, pos));
  state.pos = pos;
  const seq = ++drawSeq;
  updatePosition();
  const [bitmap, masks] = await Promise.all([frameBitmap(pos), masksAt(pos)]);
  if (seq !== drawSeq) return false;
  state.masks = masks;
  state.bitmap = bitmap;
  render();
  viewer.drawnPos = pos;
  viewer.drawCount += 1;
  if (viewer.firstDrawnAt === null) viewer.firstDrawnAt = performance.now();
  document.dispatchEvent(new CustomEvent("frame-drawn", { detail: pos }));
  prefetch(pos);
  return true;
}

function render() {
  const { width, height } = state.info;
  frameCtx.globalAlpha = 1;
  if (state.bitmap) frameCtx.drawImage(state.bitmap, 0, 0);
  else {
    frameCtx.fillStyle = "#2a2d33";
    frameCtx.fillRect(0, 0, width, height);
  }
  overlay.data.fill(0);
  labelMap.fill(0);
  const boxes = new Map();
  for (const [trackId, counts] of state.masks || []) {
    const id = state.view.owner.get(trackId);
    if (id === undefined) continue;
    const track = state.view.tracks.get(id);
    if (!visible(track)) continue;
    const box = paintRuns(runLengths(counts), height, width, overlay.data, labelMap, id, colorOf(id));
    if (!box) continue;
    const known = boxes.get(id);
    boxes.set(id, known ? [Math.min(known[0], box[0]), Math.min(known[1], box[1]), Math.max(known[2], box[2]), Math.max(known[3], box[3])] : box);
  }
  overlayCtx.putImageData(overlay, 0, 0);
  frameCtx.globalAlpha = ALPHA;
  frameCtx.drawImage(overlayCanvas, 0, 0);
  frameCtx.globalAlpha = 1;
  state.boxes = [...boxes.entries()];
  drawLabels();
}

function fitStage() {
  // The frame fills the stage's width, but never pushes the controls below the window.
  const { width, height } = state.info;
  const available = document.getElementById("stage").clientWidth;
  const tallest = Math.max(160, window.innerHeight - 190);
  const scale = Math.min(available / width, tallest / height);
  const cssWidth = Math.max(1, Math.floor(width * scale));
  const cssHeight = Math.max(1, Math.floor(height * scale));
  frameCanvas.style.width = `${cssWidth}px`;
  frameCanvas.style.height = `${cssHeight}px`;
  // Enlarged a lot, show the real pixels: a mask's edge is judged pixel by pixel.
  frameCanvas.style.imageRendering = scale >= 2 ? "pixelated" : "auto";
  const ratio = window.devicePixelRatio || 1;
  labelCanvas.width = Math.round(cssWidth * ratio);
  labelCanvas.height = Math.round(cssHeight * ratio);
  labelCanvas.style.width = `${cssWidth}px`;
  labelCanvas.style.height = `${cssHeight}px`;
}

function drawLabels() {
  const scale = labelCanvas.width / state.info.width;
  const ratio = window.devicePixelRatio || 1;
  labelCtx.clearRect(0, 0, labelCanvas.width, labelCanvas.height);
  labelCtx.font = `${Math.round(12 * ratio)}px system-ui, sans-serif`;
  labelCtx.textBaseline = "bottom";
  for (const [id, box] of state.boxes) {
    const track = state.view.tracks.get(id);
    const rgb = colorOf(id);
    const color = cssColor(rgb);
    const x = box[0] * scale;
    const y = box[1] * scale;
    if (id === state.selected) {
      labelCtx.strokeStyle = color;
      labelCtx.lineWidth = 2 * ratio;
      labelCtx.strokeRect(x, y, (box[2] - box[0] + 1) * scale, (box[3] - box[1] + 1) * scale);
    }
    const text = `#${id} ${track.category_name} ${track.score.toFixed(2)}`;
    const textWidth = labelCtx.measureText(text).width + 6 * ratio;
    const textHeight = 16 * ratio;
    const top = Math.max(textHeight, y);
    const left = Math.min(Math.max(0, x), labelCanvas.width - textWidth);
    labelCtx.fillStyle = color;
    labelCtx.fillRect(left, top - textHeight, textWidth, textHeight);
    labelCtx.fillStyle = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 150 ? "#111" : "#fff";
    labelCtx.fillText(text, left + 3 * ratio, top - 2 * ratio);
  }
}

function updatePosition() {
  const { num_frames: count, frame_indices: indices } = state.info;
  document.getElementById("seek").value = String(state.pos);
  document.getElementById("position").textContent = `frame ${state.pos + 1} / ${count} (source #${indices[state.pos]})`;
  document.getElementById("tracks").style.setProperty("--playhead", `${((state.pos + 0.5) / count) * 100}%`);
}

// ---- track list, filters and the edit panel ----

function renderTracks() {
  const list = document.getElementById("tracks");
  const head = list.querySelector(".head");
  const count = state.info.num_frames;
  const rows = [...state.view.tracks.values()].map((track) => {
    const color = cssColor(colorOf(track.track_id));
    const timeline = el(
      "span",
      {
        class: "timeline",
        onclick: (event) => {
          event.stopPropagation();
          const rect = event.currentTarget.getBoundingClientRect();
          select(track.track_id, false);
          show(Math.floor(((event.clientX - rect.left) / rect.width) * count));
        },
      },
      track.spans.map(([a, b]) =>
        el("i", { style: `left:${(a / count) * 100}%;width:${Math.max(0.4, ((b - a + 1) / count) * 100)}%;background:${color}` }),
      ),
    );
    return el(
      "div",
      {
        class: `track${track.track_id === state.selected ? " selected" : ""}${visible(track) ? "" : " hidden"}`,
        dataset: { trackId: track.track_id, color, category: track.category_name, score: track.score },
        onclick: () => select(track.track_id, true),
      },
      el("span", { class: "swatch", style: `background:${color}` }),
      el("span", { class: "mono" }, `#${track.track_id}`),
      el("span", { class: "name" }, track.category_name, track.members.length > 1 ? el("small", {}, ` +${track.members.length - 1} merged`) : null),
      el("span", { class: "num mono" }, track.score.toFixed(2)),
      timeline,
    );
  });
  list.replaceChildren(head, ...rows);
  const categorySelect = document.getElementById("filter-category");
  const names = [...new Set([...state.view.tracks.values()].map((t) => t.category_name))].sort();
  const current = state.filterCategory;
  categorySelect.replaceChildren(el("option", { value: "" }, "all"), ...names.map((n) => el("option", { value: n }, n)));
  categorySelect.value = names.includes(current) ? current : "";
  state.filterCategory = categorySelect.value;
  document.getElementById("vocabulary").replaceChildren(...state.view.categories.map((c) => el("option", { value: c.name })));
}

function renderEditPanel() {
  const track = state.selected !== null ? state.view.tracks.get(state.selected) : null;
  const selection = document.getElementById("selection");
  selection.replaceChildren(
    track
      ? el("span", {}, el("span", { class: "swatch", style: `background:${cssColor(colorOf(track.track_id))}` }), ` track #${track.track_id}: ${track.category_name}, score ${track.score.toFixed(3)}, ${track.frames} frames`)
      : "No track selected: click a mask or a row.",
  );
  for (const id of ["rename-input", "rename", "delete", "merge-into", "merge"]) {
    document.getElementById(id).disabled = !track || state.info.read_only;
  }
  const mergeInto = document.getElementById("merge-into");
  const others = track ? [...state.view.tracks.values()].filter((t) => t.track_id !== track.track_id) : [];
  mergeInto.replaceChildren(
    ...(others.length
      ? others.map((t) => el("option", { value: t.track_id }, `#${t.track_id} ${t.category_name}`))
      : [el("option", { value: "" }, "another track…")]),
  );
  document.getElementById("undo").disabled = state.edits.length === 0;
  document.getElementById("edits").replaceChildren(
    ...state.edits.map((e) =>
      el("li", {}, e.op === "rename" ? `rename #${e.track_id} → ${e.category_name}` : e.op === "delete" ? `delete #${e.track_id}` : `merge #${e.track_id} into #${e.into}`),
    ),
  );
  const unsaved = JSON.stringify(state.edits) !== JSON.stringify(state.savedEdits);
  document.getElementById("save").classList.toggle("unsaved", unsaved);
  document.body.dataset.unsaved = unsaved ? "1" : "0";
}

function select(trackId, jump) {
  state.selected = trackId;
  for (const row of document.querySelectorAll("#tracks .track[data-track-id]")) {
    row.classList.toggle("selected", Number(row.dataset.trackId) === trackId);
  }
  renderEditPanel();
  const track = trackId !== null ? state.view.tracks.get(trackId) : null;
  if (track) document.getElementById("rename-input").value = track.category_name;
  if (jump && track && track.first !== null) show(track.first);
  else drawLabels();
}

function applyEdit(edit) {
  if (edit) state.edits.push(edit);
  computeView();
  renderTracks();
  renderEditPanel();
  if (state.masks) render();
}

function setStatus(text) {
  document.getElementById("save-status").textContent = text;
}

// ---- controls ----

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function play() {
  if (state.playing) {
    state.playing = false;
    return;
  }
  state.playing = true;
  document.getElementById("play").textContent = "❚❚";
  const { fps, frame_indices: indices, num_frames: count } = state.info;
  if (state.pos >= count - 1) await show(0);
  while (state.playing && state.pos < count - 1) {
    const started = performance.now();
    const step = (indices[state.pos + 1] - indices[state.pos]) || 1;
    await show(state.pos + 1);
    const wait = (step / (fps || 30)) * 1000 - (performance.now() - started);
    if (wait > 0) await sleep(wait);
  }
  state.playing = false;
  document.getElementById("play").textContent = "▶";
}

function wire() {
  document.getElementById("prev").addEventListener("click", () => show(state.pos - 1));
  document.getElementById("next").addEventListener("click", () => show(state.pos + 1));
  document.getElementById("play").addEventListener("click", play);
  document.getElementById("seek").addEventListener("input", (event) => show(Number(event.target.value)));
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName) && event.target.type !== "range";
    if ((event.ctrlKey || event.metaKey) && event.key === "z" && !typing) {
      event.preventDefault();
      document.getElementById("undo").click();
      return;
    }
    if (typing) return;
    const stride = event.shiftKey ? 10 : 1;
    if (event.key === "ArrowRight") {
      event.preventDefault();
      show(state.pos + stride);
    } else if (event.key === "ArrowLeft") {
      event.preventDefault();
      show(state.pos - stride);
    } else if (event.key === " ") {
      event.preventDefault();
      play();
    }
  });
  frameCanvas.addEventListener("click", (event) => {
    const rect = frameCanvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - rect.left) / rect.width) * state.info.width);
    const y = Math.floor(((event.clientY - rect.top) / rect.height) * state.info.height);
    const id = labelMap[y * state.info.width + x];
    if (id > 0) select(id, true);
  });
  document.getElementById("filter-category").addEventListener("change", (event) => {
    state.filterCategory = event.target.value;
    renderTracks();
    if (state.masks) render();
  });
  document.getElementById("filter-score").addEventListener("input", (event) => {
    state.minScore = Number(event.target.value);
    document.getElementById("filter-score-value").textContent = state.minScore.toFixed(2);
    renderTracks();
    if (state.masks) render();
  });
  document.getElementById("rename").addEventListener("click", () => {
    const name = document.getElementById("rename-input").value.trim().replace(/\s+/g, " ");
    const track = state.view.tracks.get(state.selected);
    if (!track || !name || name === track.category_name) return;
    applyEdit({ op: "rename", track_id: track.track_id, category_name: name });
  });
  document.getElementById("rename-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") document.getElementById("rename").click();
  });
  document.getElementById("delete").addEventListener("click", () => {
    if (state.selected === null) return;
    applyEdit({ op: "delete", track_id: state.selected });
  });
  document.getElementById("merge").addEventListener("click", () => {
    const into = Number(document.getElementById("merge-into").value);
    if (state.selected === null || !into || into === state.selected) return;
    const from = state.selected;
    state.selected = into;
    applyEdit({ op: "merge", track_id: from, into });
  });
  document.getElementById("undo").addEventListener("click", () => {
    if (!state.edits.length) return;
    state.edits.pop();
    applyEdit(null);
  });
  document.getElementById("save").addEventListener("click", save);
  document.getElementById("relocate").addEventListener("click", relocate);
  window.addEventListener("resize", () => {
    fitStage();
    drawLabels();
  });
  window.addEventListener("beforeunload", (event) => {
    if (document.body.dataset.unsaved === "1") event.preventDefault();
  });
}

async function save() {
  setStatus("saving…");
  try {
    const saved = await api(`/api/results/${RESULT_ID}/review`, {
      method: "POST",
      json: { edits: state.edits, revision: state.revision },
    });
    state.revision = saved.revision;
    state.savedEdits = state.edits.map((e) => ({ ...e }));
    setStatus(`saved ${saved.file} (revision ${saved.revision})`);
    document.body.dataset.saved = String(saved.revision);
  } catch (err) {
    setStatus(`not saved: ${err.message}`);
  }
  renderEditPanel();
}

async function relocate() {
  const status = document.getElementById("relocate-status");
  try {
    const video = await api(`/api/results/${RESULT_ID}/video`, {
      method: "POST",
      json: { path: document.getElementById("relocate-video").value },
    });
    state.info.video = video;
    frames.clear();
    document.getElementById("video-missing").hidden = true;
    show(state.pos);
  } catch (err) {
    status.textContent = err.message;
  }
}

async function showMissingVideo() {
  document.getElementById("video-missing").hidden = false;
  document.getElementById("video-missing-text").textContent = state.info.video.message;
  try {
    const data = await api("/api/videos?all=true");
    document.getElementById("relocate-video").replaceChildren(...data.videos.map((v) => el("option", { value: v }, v)));
  } catch (err) {
    document.getElementById("relocate-status").textContent = err.message;
  }
}

async function start() {
  try {
    state.info = await api(`/api/results/${RESULT_ID}`);
  } catch (err) {
    document.getElementById("title").textContent = `Cannot open this result: ${err.message}`;
    return;
  }
  const info = state.info;
  document.title = `ovformer view: ${info.video_name}`;
  document.getElementById("title").textContent = `${info.video_name} · ${info.num_frames} frames · ${info.tracks.length} tracks${info.model_id ? ` · ${info.model_id}` : ""}`;
  document.getElementById("file").textContent = info.file;
  frameCanvas.width = info.width;
  frameCanvas.height = info.height;
  overlayCanvas.width = info.width;
  overlayCanvas.height = info.height;
  overlay = overlayCtx.createImageData(info.width, info.height);
  labelMap = new Int32Array(info.width * info.height);
  document.getElementById("seek").max = String(info.num_frames - 1);
  state.edits = (info.review.edits || []).map((e) => ({ ...e }));
  state.savedEdits = state.edits.map((e) => ({ ...e }));
  state.revision = info.review.revision || 0;
  if (info.review.reviewed) setStatus(`reviewed ${info.review.time || ""} (revision ${state.revision})`);
  if (info.review.problem) setStatus(info.review.problem);
  if (info.read_only) document.getElementById("save").disabled = true;
  if (!info.video.available) showMissingVideo();
  computeView();
  renderTracks();
  renderEditPanel();
  wire();
  fitStage();
  await show(0);
  document.body.dataset.ready = "1";
}

start();
