/* vitrine web UI, shared helpers: loaded by base.html before the page's own script (one per page:
 * project.js, image.js, dataset.js, runs.js, run.js, detection_runs.js, detect.js, account.js, leaderboard.js), which
 * takes what it needs from `window.vitrine`. What two pages use is written here, once.
 *
 * URLs are built from the prefix the server gave in <body data-base>, so every page works behind a
 * reverse proxy that serves it under a path (e.g. /proxy/8000). Data from the API is put in the
 * page with textContent or attributes, never parsed as HTML.
 */
window.vitrine = (() => {
  "use strict";

  const body = document.body;
  const BASE = (body.dataset.base || "").replace(/\/+$/, "");
  const PAGE = body.dataset.page || "";
  const PROJECT = body.dataset.project || ""; // the collection of the project and image pages
  const DATASET = body.dataset.dataset || ""; // the dataset of the classification pages, if any

  // ---------------------------------------------------------------------------- URLs
  const enc = encodeURIComponent;
  const encPath = (path) => String(path).split("/").map(enc).join("/");
  const apiUrl = (rest) => `${BASE}/api/v1${rest}`;
  // a collection (project and image pages)
  const projectApi = (rest = "") => apiUrl(`/projects/${enc(PROJECT)}${rest}`);
  const projectPage = (query = "") => `${BASE}/p/${enc(PROJECT)}${query}`;
  const imagePage = (path) => `${BASE}/p/${enc(PROJECT)}/image/${encPath(path)}`;
  const thumbUrl = (path, size) => projectApi(`/thumbs/${encPath(path)}`) + (size ? `?size=${size}` : "");
  // datasets and runs (classification and detection pages)
  const datasetApi = (name, rest = "") => apiUrl(`/datasets/${enc(name)}${rest}`);
  const datasetThumbUrl = (name, path, size) =>
    datasetApi(name, `/thumbs/${encPath(path)}`) + (size ? `?size=${size}` : "");
  const runPage = (id, rest = "") => `${BASE}/runs/${enc(id)}${rest}`;
  const datasetPage = (name) => `${BASE}/datasets/${enc(name)}`;
  const leaderboardPage = (dataset) => `${BASE}/leaderboards/${enc(dataset)}`;
  const detectionRunPage = (id, jobId) => `${BASE}/detection/runs/${enc(id)}${jobId ? `?job_id=${enc(jobId)}` : ""}`;

  // ---------------------------------------------------------------------------- DOM helpers
  const $ = (selector, root = document) => root.querySelector(selector);

  /** Make an element. attrs: properties/attributes; children: nodes or strings (as text). */
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const isNum = (x) => typeof x === "number" && isFinite(x);
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + "s"}`;
  const basename = (path) => String(path || "").split(/[\\/]/).pop();

  /** A size in bytes for people: "512 bytes", "1.5 KB", "20 MB" (1024-based). */
  function formatBytes(n) {
    if (n === null || n === undefined || !isFinite(Number(n))) return "";
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return i === 0 ? `${Math.round(v)} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  /** A duration for people: "under 0.1 s", "2.5 s", "3 min 04 s", "1 h 05 min". */
  function formatDuration(seconds) {
    if (!isNum(seconds)) return "";
    if (seconds < 0.1) return "under 0.1 s";
    if (seconds < 10) return `${Math.round(seconds * 10) / 10} s`;
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  const pct = (x, digits = 1) => (isNum(x) ? `${(x * 100).toFixed(digits)} %` : "—");
  const score = (x) => (isNum(x) ? x.toFixed(3) : "—");
  const decimal = (x, digits = 3) => (isNum(x) ? x.toFixed(digits) : "–");

  function formatWhen(epochSeconds) {
    if (!isNum(epochSeconds)) return "";
    return new Date(epochSeconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function stateBadge(state, id) {
    return h("span", { class: `badge state-${state || "unknown"}`, id }, state || "unknown");
  }

  /** Inline facts separated by dots. */
  function dotted(items) {
    const out = [];
    items.filter(Boolean).forEach((item, i) => {
      if (i) out.push(h("span", { class: "dot", "aria-hidden": "true" }, "·"));
      out.push(item);
    });
    return out;
  }

  // ---------------------------------------------------------------------------- result grid
  /** A path as text nodes with line-break opportunities after each slash (textContent unchanged). */
  function pathWithBreaks(path) {
    const parts = String(path).split("/");
    const out = [];
    parts.forEach((part, i) => {
      out.push(i < parts.length - 1 ? `${part}/` : part);
      if (i < parts.length - 1) out.push(h("wbr"));
    });
    return out;
  }

  function resultItem(hit) {
    const path = hit.path;
    const img = h("img", {
      src: thumbUrl(path), alt: path, loading: "lazy", decoding: "async",
      onerror: (event) => {
        event.currentTarget.closest(".thumb").classList.add("broken");
        event.currentTarget.alt = "no preview";
      },
    });
    const bits = [];
    if (typeof hit.score === "number") {
      const title = hit.label ? `detector score for ${hit.label} (${plural(hit.count || 1, "box", "boxes")})`
        : "similarity score (higher is closer)";
      bits.push(h("span", { class: "score", title }, hit.score.toFixed(3)));
    }
    if (hit.width && hit.height) bits.push(h("span", { class: "dims" }, `${hit.width}×${hit.height}`));
    if (hit.duplicates && hit.duplicates.length) {
      bits.push(h("span", { class: "dups", title: hit.duplicates.join("\n") },
        `+${plural(hit.duplicates.length, "copy", "copies")}`));
    }
    if (hit.error) bits.push(h("span", { class: "badge badge-error", title: hit.error }, "failed"));
    return h("li", { class: "result", dataset: { path } },
      h("a", { class: "result-link", href: imagePage(path), title: path },
        h("div", { class: "thumb" }, img),
        h("div", { class: "result-text" },
          h("span", { class: "caption" }, pathWithBreaks(path)),
          bits.length ? h("span", { class: "result-meta" }, bits) : null)));
  }

  function fillGrid(list, hits) {
    list.replaceChildren(...hits.map(resultItem));
  }

  // ---------------------------------------------------------------------------- charts
  const COLORS = {
    accent: "#2c5fb8", accentSoft: "#a9bfe6", text: "#1d1f23", muted: "#676b73", grid: "#e6e6e1", ok: "#1f7a3d",
    train: "#2c5fb8", val: "#e29a2d", test: "#2f9e5b", unassigned: "#9aa0a6",
  };
  const PLOT_CONFIG = {
    displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
  };

  function layout(extra = {}) {
    const font = getComputedStyle(body).fontFamily;
    return {
      margin: { l: 56, r: 16, t: 10, b: 44 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: font, size: 12, color: COLORS.text },
      hoverlabel: { font: { family: font } },
      bargap: 0.08,
      ...extra,
      xaxis: { gridcolor: COLORS.grid, zerolinecolor: COLORS.grid, automargin: true, ...(extra.xaxis || {}) },
      yaxis: { gridcolor: COLORS.grid, zerolinecolor: COLORS.grid, automargin: true, ...(extra.yaxis || {}) },
    };
  }

  function plot(el, data, lay) {
    if (!window.Plotly) {
      throw new ApiError("the chart library (plotly.min.js) did not load", "reload the page; the server serves it at /static/vendor/plotly.min.js");
    }
    el.classList.remove("chart-empty");
    return window.Plotly.react(el, data, lay, PLOT_CONFIG);
  }

  /** A classifier's confusion matrix from its detail (GET /api/v1/runs/{id}: metrics.json, else
   * the run record's metrics): {labels, matrix, split} or null. Rows: true class; columns: predicted. */
  function findConfusion(detail) {
    const record = (detail && detail.record) || {};
    const candidates = [detail && detail.metrics, ...["test", "all", "val"].map((sp) => (record.metrics || {})[sp])];
    for (const m of candidates) {
      if (!m || typeof m !== "object") continue;
      let cm = m.confusion_matrix || m.confusion;
      let labels = m.classes || m.labels || record.classes;
      if (cm && !Array.isArray(cm) && typeof cm === "object") {
        labels = cm.labels || cm.classes || labels;
        cm = cm.matrix || cm.counts;
      }
      if (Array.isArray(cm) && cm.length && Array.isArray(cm[0]) && labels && labels.length === cm.length) {
        return { labels, matrix: cm, split: m.split };
      }
    }
    return null;
  }

  // ---------------------------------------------------------------------------- jobs (training)
  const STAGES = {
    embed: "Embedding images", fit: "Fitting", evaluate: "Evaluating", train: "Training", validate: "Validating",
    load: "Loading images", epoch: "Training", done: "Finishing", cancelled: "Cancelled",
  };

  /** Whether a job in this state is still to finish (queued or running). */
  const isActive = (state) => state === "queued" || state === "running";

  /** A job as the server has it now; cancelling one (answers the job). */
  const fetchJob = (id) => api(apiUrl(`/jobs/${enc(id)}`));
  const cancelJob = (id) => api(apiUrl(`/jobs/${enc(id)}/cancel`), { method: "POST" });

  /** A job's box shows the job: its state and id as data-state and data-job-id, its state in the badge. */
  function showJobState(box, badge, job) {
    box.hidden = false;
    box.dataset.state = job.state;
    box.dataset.jobId = job.id;
    badge.textContent = job.state;
    badge.className = `badge state-${job.state}`;
  }

  /** What the fine-tuning of a classifier reports when done. */
  function classifierResult(r) {
    const bits = [];
    if (isNum(r.accuracy)) bits.push(`accuracy ${pct(r.accuracy)}`);
    if (isNum(r.macro_f1)) bits.push(`macro-F1 ${score(r.macro_f1)}`);
    return bits;
  }

  /** A training job's state in words. ``stages`` names its stages, ``trained`` lists what a
   * finished job reports, ``cancelled`` is said when a cancelled job left no message. */
  function jobText(job, { stages = STAGES, trained = classifierResult, cancelled = "Cancelled" } = {}) {
    if (job.state === "queued") return "Waiting to start";
    if (job.state === "running") {
      let text = stages[job.stage] || (job.stage ? job.stage : "Starting");
      if (job.message) return `${text} · ${job.message}`;
      if (job.total) text += ` ${job.done}/${job.total}`;
      if (isNum(job.eta_seconds)) text += ` · about ${formatDuration(job.eta_seconds)} left`;
      return text;
    }
    const took = job.finished_at && job.started_at ? ` in ${formatDuration(job.finished_at - job.started_at)}` : "";
    if (job.state === "done") return [`Trained${took}`, ...trained(job.result || {})].join(" · ");
    if (job.state === "cancelled") return job.message || cancelled;
    return (job.error && job.error.message) || "the training failed";
  }

  // ---------------------------------------------------------------------------- API and errors
  class ApiError extends Error {
    constructor(message, hint, status, code) {
      super(message);
      this.hint = hint || null;
      this.status = status;
      this.code = code || null;
    }
  }

  /** fetch() that answers the Response when it is ok, and throws an ApiError carrying the server's
   * {error: {message, hint, code}} (or the status line) when it is not. */
  async function request(url, options) {
    let res;
    try {
      res = await fetch(url, options);
    } catch (err) {
      throw new ApiError(`cannot reach the vitrine server (${err.message})`,
        "check that the server is still running and reload the page", 0, "network");
    }
    if (!res.ok) {
      const type = res.headers.get("content-type") || "";
      let data = null;
      let text = "";
      if (type.includes("json")) {
        try { data = await res.json(); } catch (err) { text = `unreadable JSON (${err.message})`; }
      } else {
        text = await res.text();
      }
      const e = (data && data.error) || {};
      const message = e.message || `${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`;
      throw new ApiError(message, e.hint, res.status, e.code);
    }
    return res;
  }

  /** :func:`request` answering the parsed JSON body (null for a body that is not JSON). */
  async function api(url, options) {
    const res = await request(url, options);
    if (!(res.headers.get("content-type") || "").includes("json")) {
      await res.text();
      return null;
    }
    try { return await res.json(); } catch (_) { return null; }
  }

  /** POST /api/v1/projects/{name}/export: images of the collection as a CSV (``format: "csv"``)
   * or a new dataset; answers the Response (a CSV file, or the new dataset as JSON). */
  function exportImages(payload) {
    return request(projectApi("/export"), {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload),
    });
  }

  function showError(err, context) {
    const box = $("#error");
    const message = (err && err.message) || String(err);
    if (!box) { window.alert(message); return; }
    $(".error-message", box).textContent = context ? `${context}: ${message}` : message;
    const hint = $(".error-hint", box);
    hint.textContent = err && err.hint ? `Hint: ${err.hint}` : "";
    hint.hidden = !(err && err.hint);
    box.hidden = false;
    if (window.console) console.error(context || "vitrine", err);
  }

  function clearError() {
    const box = $("#error");
    if (box) box.hidden = true;
  }

  /** A .catch() handler that shows the error with what was being done. */
  const report = (context) => (err) => showError(err, context);

  // Nothing fails silently: anything not caught elsewhere ends up in the error box.
  window.addEventListener("unhandledrejection", (event) => showError(event.reason));
  window.addEventListener("error", (event) => {
    if (event.error) showError(event.error, "unexpected error in the page");
  });

  function wireErrorBox() {
    const close = $("#error .error-close");
    if (close) close.addEventListener("click", clearError);
  }
  wireErrorBox();

  /** Save ``blob`` as a file named ``filename`` (a download the browser starts, no navigation). */
  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  return {
    BASE, PAGE, PROJECT, DATASET, enc, encPath, apiUrl, $, h, isNum, plural, basename, dotted, formatBytes,
    formatDuration, pct, score, decimal, formatWhen, stateBadge,
    projectApi, projectPage, imagePage, thumbUrl, fillGrid,
    datasetApi, datasetThumbUrl, runPage, datasetPage, detectionRunPage, leaderboardPage,
    COLORS, layout, plot, findConfusion, STAGES, isActive, fetchJob, cancelJob, showJobState, jobText,
    ApiError, request, api, exportImages, showError, clearError, report, download,
  };
})();
