/* vitrine web UI: the 2-D map of a collection or of a classification dataset (map.html, whose
 * body says which: data-scope "project" or "dataset"). A small client of the REST API:
 *   GET  /api/v1/projects/{name}/map          ready, stale or missing, and the map job
 *   POST /api/v1/projects/{name}/map          start the map job (UMAP), followed at /api/v1/jobs/{id}
 *   GET  /api/v1/projects/{name}/map/points   x, y, id, path, folder codes (columns)
 *   GET  /api/v1/projects/{name}/map/colors   each point's folder, tag or cluster
 *   GET  /api/v1/projects/{name}/map/query    where a text query falls
 *   POST /api/v1/projects/{name}/export       the selected images as CSV or a new dataset
 * and, for a dataset, the same under /api/v1/datasets/{name}/map (points with label and split
 * codes; colours by label, split or cluster; no text query); its selection's CSV (path, label,
 * split) is built here, as curate.js does for datasets: there is no dataset export route.
 * Points are drawn with Plotly's WebGL scatter (scattergl), one trace per colour (the legend
 * toggles them); each point carries its row in the columns as customdata, so a lasso or box
 * selection, a hover and a query all name rows. window.vitrineMap exposes the first draw's time
 * (performance.now() from just before Plotly.newPlot to the animation frame after it resolves) and
 * the time since the page's navigation began, for the benchmark and the tests.
 */
(() => {
  "use strict";
  const {
    $, h, api, apiUrl, projectApi, thumbUrl, fillGrid, plural, formatDuration, datasetPage, isActive, fetchJob,
    cancelJob, showJobState, showError, clearError, report, ApiError, COLORS, datasetApi, datasetThumbUrl, DATASET, encPath,
    PROJECT, download, exportImages,
  } = window.vitrine;
  const SCOPE = document.body.dataset.scope === "dataset" ? "dataset" : "project";
  const NAME = SCOPE === "dataset" ? DATASET : PROJECT;
  const mapApi = (rest = "") => (SCOPE === "dataset" ? datasetApi(NAME, `/map${rest}`) : projectApi(`/map${rest}`));
  const thumb = (path, size) => (SCOPE === "dataset" ? datasetThumbUrl(NAME, path, size) : thumbUrl(path, size));
  const homePage = () => (SCOPE === "dataset"
    ? `${window.vitrine.BASE}/datasets/${encodeURIComponent(NAME)}`
    : `${window.vitrine.BASE}/p/${encodeURIComponent(NAME)}`);
  // the colourings the points carry themselves (no request): the others come from /map/colors
  const LOCAL = SCOPE === "dataset"
    ? {
      label: () => ({ by: "label", categories: points.labels, codes: points.label }),
      split: () => ({ by: "split", categories: points.splits, codes: points.split }),
    }
    : { folder: () => ({ by: "folder", categories: points.folders, codes: points.folder }) };

  const POLL_MS = 700;
  const MAX_EXPORT = 10000; // the export route's limit
  const MAX_SHOWN = 120; // thumbnails shown for a selection (all are exported)
  const MAX_TRACES = 20; // colours; the smaller categories share "other"
  const PALETTE = [
    "#2c5fb8", "#e29a2d", "#2f9e5b", "#c4433b", "#7d5ab5", "#8c5a3c", "#d45fa6", "#6b7280", "#a7a51c", "#1aa3b5",
    "#9fb9e8", "#f2c48a", "#9ad6aa", "#ec9c95", "#c3b0e0", "#c8a58e", "#f0b0d6", "#b9bec6", "#d8d77f", "#8fd5df",
  ];
  const OTHER = "#c9ccd1";
  const STAGES = {
    read: "Reading the vectors", hash: "Reading the images", embed: "Embedding the images", umap: "Running UMAP", "": "Starting",
  };

  const plotEl = $("#map-plot");
  const exposed = { drawMs: undefined, firstDrawAt: undefined, points: 0 };
  window.vitrineMap = exposed;

  let model = null;
  let points = null; // the columns of /map/points
  let colours = null; // {categories, codes} in use: from the points (LOCAL) or /map/colors
  let selected = []; // rows
  let queryMark = null; // {x, y, neighbours, text}
  let polling = null;

  // ------------------------------------------------------------------ state and job
  function showEmpty(message, hint) {
    $("#map-empty-message").textContent = message;
    const p = $("#map-empty-hint");
    p.replaceChildren(hint || "", " ", h("a", { href: homePage() }, SCOPE === "dataset" ? "Go to the dataset" : "Go to the collection"), ".");
    $("#map-empty").hidden = false;
    $("#map-meta").textContent = "";
  }

  function describe(summary) {
    const n = summary.points;
    const bits = [`${n.toLocaleString("en")} ${n === 1 ? "image" : "images"} placed by UMAP on ${summary.model} (${summary.space})`];
    if (summary.seconds !== undefined) bits.push(`computed in ${formatDuration(summary.seconds)}`);
    const p = summary.params || {};
    bits.push(`${p.n_neighbors} neighbours, min. distance ${p.min_dist}`);
    return bits.join(" · ");
  }

  function renderJob(job) {
    const box = $("#map-job");
    showJobState(box, $("#map-job-state"), job);
    const progress = $("#map-job-progress");
    let text = "";
    if (job.state === "queued") text = "Waiting to start (one map is computed at a time)";
    else if (job.state === "running") {
      text = STAGES[job.stage] || job.stage;
      if (job.stage !== "umap" && job.total) text += ` ${job.done.toLocaleString()}/${job.total.toLocaleString()}`;
      if (job.stage === "umap") text += " (a minute or two per 100,000 images)";
    } else if (job.state === "done") text = job.result && job.result.computed ? "Computed" : "Up to date";
    else if (job.state === "cancelled") text = job.message || "Cancelled";
    else text = (job.error && job.error.message) || "the map failed";
    if (isActive(job.state) && job.stage !== "umap" && job.total) progress.value = job.done / job.total;
    else if (isActive(job.state)) progress.removeAttribute("value");
    progress.hidden = !isActive(job.state);
    $("#map-job-text").textContent = text;
    $("#map-job-cancel").hidden = !isActive(job.state);
    box.hidden = job.state === "done";
  }

  function followJob(job) {
    renderJob(job);
    $("#map-meta").textContent = "Computing the map…";
    if (polling) clearTimeout(polling);
    const tick = async () => {
      polling = null;
      let fresh;
      try {
        fresh = await fetchJob(job.id);
      } catch (err) {
        showError(err, "following the map job");
        return;
      }
      renderJob(fresh);
      if (isActive(fresh.state)) { polling = setTimeout(tick, POLL_MS); return; }
      if (fresh.state === "done") { await load(); return; }
      if (fresh.state === "failed") showError(new ApiError(fresh.error.message, fresh.error.hint), "the map failed");
      $("#map-meta").textContent = "No map: start it again with “Compute again”.";
      $("#map-card").hidden = false;
    };
    polling = setTimeout(tick, POLL_MS);
  }

  async function startJob(options = {}) {
    clearError();
    const body = { model, ...options };
    const job = await api(mapApi(), {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    followJob(job);
  }

  async function load() {
    let st;
    try {
      st = await api(mapApi());
    } catch (err) {
      if (err.status === 404) {
        const notIndexed = /not been indexed/.test(err.message);
        showEmpty(err.message, notIndexed ? "Index it first (“Index now” on the collection page): the map places the images by their vectors."
          : (err.hint ? `${err.hint}.` : ""));
        return;
      }
      throw err;
    }
    model = st.model;
    if (st.ready) {
      await draw(st);
      return;
    }
    if (st.job && isActive(st.job.state)) { followJob(st.job); return; }
    await startJob(st.stale && st.map ? { n_neighbors: st.map.params.n_neighbors, min_dist: st.map.params.min_dist } : {});
  }

  // ------------------------------------------------------------------ drawing
  function markerSize(n) {
    return n > 50000 ? 3 : n > 5000 ? 4 : n > 500 ? 6 : 9;
  }

  /** Rows grouped by category, the largest first; past MAX_TRACES - 1 they share "other". */
  function groups() {
    const cats = colours.categories;
    const codes = colours.codes;
    const counts = new Array(cats.length).fill(0);
    for (const c of codes) counts[c] += 1;
    const order = cats.map((_, i) => i).filter((i) => counts[i] > 0).sort((a, b) => counts[b] - counts[a]);
    const kept = order.length > MAX_TRACES ? order.slice(0, MAX_TRACES - 1) : order;
    const slot = new Map(kept.map((c, i) => [c, i]));
    const rows = kept.map(() => []);
    const other = [];
    codes.forEach((c, row) => { const s = slot.get(c); if (s === undefined) other.push(row); else rows[s].push(row); });
    // splits keep the colours the other pages give them (train blue, val orange, test green)
    const fixed = (c) => (colours.by === "split" ? COLORS[cats[c] === "(no split)" ? "unassigned" : cats[c]] : undefined);
    const out = kept.map((c, i) => ({
      name: `${cats[c] === "" ? "(top level)" : cats[c]} (${counts[c]})`, rows: rows[i], color: fixed(c) || PALETTE[i % PALETTE.length],
    }));
    if (other.length) out.push({ name: `other (${other.length})`, rows: other, color: OTHER });
    return out;
  }

  function traces() {
    const size = markerSize(points.x.length);
    const out = groups().map((g) => ({
      type: "scattergl", mode: "markers", name: g.name,
      x: g.rows.map((r) => points.x[r]), y: g.rows.map((r) => points.y[r]), customdata: g.rows,
      marker: { size, color: g.color, opacity: 0.8 },
      hoverinfo: "none",
      selected: { marker: { opacity: 1 } }, unselected: { marker: { opacity: 0.25 } },
    }));
    if (queryMark && queryMark.x !== null) {
      const n = queryMark.neighbours;
      out.push({
        type: "scatter", mode: "markers", name: "query’s nearest", hoverinfo: "none",
        x: n.map((p) => p.x), y: n.map((p) => p.y), customdata: n.map((p) => points.path.indexOf(p.path)),
        marker: { size: 11, color: "rgba(0,0,0,0)", line: { color: COLORS.text, width: 2 } },
      });
      out.push({
        type: "scatter", mode: "markers+text", name: `query: ${queryMark.text}`, hoverinfo: "none",
        x: [queryMark.x], y: [queryMark.y], text: [queryMark.text], textposition: "top center",
        marker: { size: 18, symbol: "star", color: "#f5c518", line: { color: COLORS.text, width: 1.5 } },
      });
    }
    return out;
  }

  function plotLayout() {
    const font = getComputedStyle(document.body).fontFamily;
    return {
      margin: { l: 10, r: 10, t: 36, b: 10 }, // the toolbar above the points, the legend below them
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: font, size: 12, color: COLORS.text },
      dragmode: "lasso", hovermode: "closest", uirevision: "map",
      xaxis: { visible: false }, yaxis: { visible: false, scaleanchor: "x" },
      legend: { itemsizing: "constant", orientation: "h", x: 0, y: -0.01, yanchor: "top" },
      showlegend: true,
    };
  }

  const CONFIG = { displaylogo: false, responsive: true, scrollZoom: true, modeBarButtonsToRemove: ["autoScale2d", "toggleSpikelines"] };

  async function draw(st) {
    points = await api(mapApi(`/points?model=${encodeURIComponent(model)}`));
    exposed.points = points.x.length;
    $("#map-meta").textContent = describe(points);
    const note = $("#map-note");
    note.textContent = points.note || "";
    note.hidden = !points.note;
    $("#map-card").hidden = false;
    $("#map-job").hidden = true;
    if (!window.Plotly) throw new ApiError("the chart library (plotly.min.js) did not load", "reload the page");
    const colourBy = $("#map-color").value;
    colours = await coloursBy(colourBy);
    const t0 = performance.now();
    await window.Plotly.newPlot(plotEl, traces(), plotLayout(), CONFIG);
    // drawn: newPlot resolves once the WebGL scene is drawn; the next frame puts it on screen
    await new Promise((resolve) => window.requestAnimationFrame(() => resolve()));
    exposed.drawMs = performance.now() - t0;
    exposed.firstDrawAt = performance.now();
    plotEl.dataset.colour = colourBy;
    plotEl.dataset.points = String(points.x.length);
    wirePlot();
  }

  async function coloursBy(by) {
    if (LOCAL[by]) return LOCAL[by]();
    const k = Number($("#map-clusters").value) || 8;
    return api(mapApi(`/colors?by=${by}&clusters=${k}&model=${encodeURIComponent(model)}`));
  }

  async function redraw() {
    if (!points) return;
    await window.Plotly.react(plotEl, traces(), plotLayout(), CONFIG);
  }

  let wired = false;
  function wirePlot() {
    if (wired) return;
    wired = true;
    const hover = $("#map-hover");
    plotEl.on("plotly_hover", (ev) => {
      const pt = ev && ev.points && ev.points[0];
      if (!pt || pt.customdata === undefined || pt.customdata < 0) return;
      const path = points.path[pt.customdata];
      $("#map-hover-img").src = thumb(path, 160);
      $("#map-hover-path").textContent = path;
      const e = ev.event || {};
      const x = Math.min((e.clientX || 0) + 16, window.innerWidth - 200);
      const y = Math.min((e.clientY || 0) + 16, window.innerHeight - 220);
      hover.style.left = `${Math.max(0, x)}px`;
      hover.style.top = `${Math.max(0, y)}px`;
      hover.hidden = false;
    });
    plotEl.on("plotly_unhover", () => { hover.hidden = true; });
    plotEl.on("plotly_selected", (ev) => {
      if (!ev || !ev.points) return; // a click in empty space, not a selection
      const rows = [...new Set(ev.points.map((p) => p.customdata).filter((r) => Number.isInteger(r) && r >= 0))];
      select(rows);
    });
    plotEl.on("plotly_deselect", () => select([]));
  }

  // ------------------------------------------------------------------ selection and export
  function select(rows) {
    selected = rows;
    const section = $("#map-selection");
    $("#map-export-done").hidden = true;
    if (!rows.length) { section.hidden = true; return; }
    const n = rows.length;
    const too = n > MAX_EXPORT;
    $("#map-selection-count").textContent = too
      ? `${plural(n, "image")}: select at most ${MAX_EXPORT.toLocaleString()} to export them.`
      : `${plural(n, "image")} selected on the map.`;
    $("#map-export-csv").disabled = too;
    if ($("#map-export-dataset-button")) $("#map-export-dataset-button").disabled = too;
    const shown = rows.slice(0, MAX_SHOWN);
    if (SCOPE === "dataset") fillDatasetGrid(shown);
    else fillGrid($("#map-results"), shown.map((r) => ({ path: points.path[r] })));
    const more = $("#map-results-more");
    more.textContent = n > MAX_SHOWN ? `The first ${MAX_SHOWN} are shown; all ${n.toLocaleString()} are exported.` : "";
    more.hidden = n <= MAX_SHOWN;
    section.hidden = false;
  }
  /** A dataset's selected images: thumbnails captioned with their label and split. */
  function fillDatasetGrid(rows) {
    $("#map-results").replaceChildren(...rows.map((r) => {
      const path = points.path[r];
      return h("li", { class: "result", dataset: { path } },
        h("a", { class: "result-link", href: datasetApi(NAME, `/images/${encPath(path)}`), title: path },
          h("div", { class: "thumb" }, h("img", { src: thumb(path, 320), alt: path, loading: "lazy", decoding: "async" })),
          h("div", { class: "result-text" }, h("span", { class: "caption" }, path),
            h("span", { class: "muted" }, ` ${points.labels[points.label[r]]} · ${points.splits[points.split[r]]}`))));
    }));
  }

  /** The selection as CSV (path, label, split), built here for a dataset. */
  function datasetCsv(rows) {
    const cell = (v) => (/[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
    const lines = rows.map((r) => [points.path[r], points.labels[points.label[r]], points.splits[points.split[r]]].map(cell).join(","));
    return ["path,label,split", ...lines].join("\n") + "\n";
  }
  exposed.csv = () => datasetCsv(selected);

  exposed.select = (paths) => {
    const byPath = new Map(points.path.map((p, i) => [p, i]));
    select(paths.map((p) => byPath.get(p)).filter((r) => r !== undefined));
  };

  const postExport = (extra) => exportImages({ paths: selected.map((r) => points.path[r]), ...extra });

  $("#map-export-csv").addEventListener("click", async () => {
    clearError();
    try {
      const blob = SCOPE === "dataset"
        ? new Blob([datasetCsv(selected)], { type: "text/csv" })
        : await (await postExport({ format: "csv" })).blob();
      download(blob, `${NAME}_map_selection.csv`);
      const done = $("#map-export-done");
      done.textContent = `Exported ${plural(selected.length, "image")} as CSV.`;
      done.hidden = false;
    } catch (err) {
      showError(err, "export as CSV");
    }
  });

  if ($("#map-export-dataset")) $("#map-export-dataset").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const name = $("#map-dataset-name").value.trim();
    const label = $("#map-dataset-label").value.trim() || "selected";
    try {
      const data = await (await postExport({ format: "dataset", dataset_name: name, label })).json();
      const done = $("#map-export-done");
      done.replaceChildren(`Saved ${plural(data.samples, "image")} as dataset `,
        h("a", { href: datasetPage(data.dataset) }, data.dataset), ` (class “${label}”).`);
      done.hidden = false;
    } catch (err) {
      showError(err, "save as dataset");
    }
  });

  $("#map-selection-clear").addEventListener("click", () => {
    select([]);
    if (points) window.Plotly.restyle(plotEl, { selectedpoints: [null] });
  });

  // ------------------------------------------------------------------ controls
  async function recolour() {
    const by = $("#map-color").value;
    $("#map-clusters-label").hidden = by !== "cluster";
    colours = await coloursBy(by);
    await redraw();
    plotEl.dataset.colour = by;
  }
  $("#map-color").addEventListener("change", () => recolour().catch(report("colour the map")));
  $("#map-clusters").addEventListener("change", () => recolour().catch(report("colour the map")));

  if ($("#map-query-form")) $("#map-query-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const text = $("#map-query").value.trim();
    const info = $("#map-query-info");
    if (!text) { queryMark = null; info.hidden = true; await redraw(); return; }
    try {
      const placed = await api(mapApi(`/query?q=${encodeURIComponent(text)}&model=${encodeURIComponent(model)}`));
      queryMark = { ...placed, text };
      info.textContent = placed.x === null
        ? `No mapped image matches “${text}”.`
        : `“${text}” is placed among its ${plural(placed.neighbours.length, "nearest image")} (circled): best ${placed.neighbours[0].path}.`;
      info.hidden = false;
      await redraw();
    } catch (err) {
      showError(err, "place the query");
    }
  });

  $("#map-options-form").addEventListener("submit", (event) => {
    event.preventDefault();
    startJob({
      n_neighbors: Number($("#map-neighbors").value), min_dist: Number($("#map-min-dist").value),
    }).catch(report("cannot start the map"));
  });

  $("#map-job-cancel").addEventListener("click", async () => {
    const id = $("#map-job").dataset.jobId;
    if (id) renderJob(await cancelJob(id).catch((err) => { showError(err, "cannot cancel"); return { state: "failed" }; }));
  });

  load().catch(report("the map"));
})();
