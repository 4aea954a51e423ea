// The index page: every result of the served folder, and runs of the model started from here.
import { api, el } from "/static/api.js";

const resultsBody = document.querySelector("#results tbody");
const runsBody = document.querySelector("#runs tbody");
let knownDone = new Set();
let polling = null;

function reviewCell(review) {
  if (review.problem) return el("span", { class: "bad", title: review.problem }, "unreadable review");
  if (!review.reviewed) return el("span", { class: "muted" }, "not reviewed");
  const when = review.time ? review.time.replace("T", " ").replace("+00:00", " UTC") : "";
  return el("span", { class: "good" }, `reviewed (${review.edits.length} edits) ${when}`);
}

async function loadResults() {
  const status = document.getElementById("results-status");
  try {
    const data = await api("/api/results");
    document.getElementById("folder").textContent = data.folder;
    resultsBody.replaceChildren(
      ...data.results.map((row) => {
        if (!row.id) {
          return el("tr", { class: "broken" }, el("td", {}, "—"), el("td", {}, row.file), el("td", { colspan: 5, class: "bad" }, row.error));
        }
        return el(
          "tr",
          { dataset: { id: row.id } },
          el("td", {}, el("a", { href: `/result/${row.id}` }, row.video_name)),
          el("td", { class: "muted" }, row.file),
          el("td", { class: "num" }, row.frames),
          el("td", { class: "num" }, row.tracks),
          el("td", {}, row.categories.join(", ")),
          el("td", { class: "muted" }, row.modified.replace("T", " ").replace("+00:00", " UTC")),
          el("td", {}, reviewCell(row.review)),
        );
      }),
    );
    status.textContent = data.results.length ? "" : "No results in this folder yet: run the model below.";
  } catch (err) {
    status.textContent = `Cannot list results: ${err.message}`;
  }
}

async function loadVideos(select) {
  const data = await api("/api/videos");
  const current = select.value;
  select.replaceChildren(...data.videos.map((v) => el("option", { value: v }, v)));
  if (!data.videos.length) select.append(el("option", { value: "" }, "(no videos in the folder: upload one)"));
  if (current && data.videos.includes(current)) select.value = current;
}

function progressCell(run) {
  const total = run.frames_total || 0;
  const fraction = total ? Math.min(1, run.frames_done / total) : 0;
  const rate = run.windows_per_second ? `, ${run.windows_per_second.toFixed(2)} windows/s` : "";
  return el(
    "td",
    {},
    el("progress", { max: 1, value: run.state === "done" ? 1 : fraction }),
    el("span", { class: "muted" }, ` ${run.frames_done}/${total || "?"} frames${rate}`),
  );
}

async function loadRuns() {
  const data = await api("/api/runs");
  const rows = data.runs
    .slice()
    .reverse()
    .map((run) =>
      el(
        "tr",
        { dataset: { run: run.id, state: run.state } },
        el("td", {}, run.id),
        el("td", {}, run.video),
        el("td", {}, run.classes.join(", ")),
        el("td", { class: run.state === "failed" ? "bad" : run.state === "done" ? "good" : "" }, run.state, run.error ? `: ${run.error}` : ""),
        progressCell(run),
        el("td", {}, run.result_file || ""),
      ),
    );
  runsBody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No runs yet."))]));
  const finished = data.runs.filter((r) => r.state === "done").map((r) => r.id);
  if (finished.some((id) => !knownDone.has(id))) {
    finished.forEach((id) => knownDone.add(id));
    await loadResults();
  }
  const active = data.runs.some((r) => r.state === "queued" || r.state === "running");
  if (active && !polling) polling = setInterval(() => loadRuns().catch(() => {}), 500);
  if (!active && polling) {
    clearInterval(polling);
    polling = null;
  }
}

async function upload(file) {
  const status = document.getElementById("upload-status");
  status.textContent = `uploading ${file.name}…`;
  try {
    const data = await api(`/api/uploads?name=${encodeURIComponent(file.name)}`, { method: "PUT", body: file });
    const select = document.getElementById("run-video");
    await loadVideos(select);
    select.value = data.video;
    status.textContent = `uploaded as ${data.video}`;
  } catch (err) {
    status.textContent = `upload refused: ${err.message}`;
  }
}

document.getElementById("upload-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) upload(file);
});

document.getElementById("run-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("run-status");
  try {
    const run = await api("/api/runs", {
      method: "POST",
      json: {
        video: document.getElementById("run-video").value,
        vocabulary: document.getElementById("run-vocabulary").value,
        model: document.getElementById("run-model").value || undefined, // empty: the server's own model
        threshold: Number(document.getElementById("run-threshold").value),
      },
    });
    status.textContent = `run ${run.id} queued`;
    await loadRuns();
  } catch (err) {
    status.textContent = `cannot start: ${err.message}`;
  }
});

async function loadModels() {
  const data = await api("/api/models");
  document.getElementById("run-model").replaceChildren(...data.models.map((m) => el("option", { value: m }, m)));
}

// The model list is asked for only when the run form is used: listing the cached releases loads
// PyTorch on the server, which would slow the first page of someone who only looks at results.
let modelsAsked = false;
document.getElementById("run-form").addEventListener("focusin", () => {
  if (modelsAsked) return;
  modelsAsked = true;
  loadModels().catch((err) => {
    document.getElementById("run-status").textContent = `no models: ${err.message}`;
  });
});

(async () => {
  await Promise.all([loadResults(), loadVideos(document.getElementById("run-video")), loadRuns()]);
  document.body.dataset.ready = "1";
})();
