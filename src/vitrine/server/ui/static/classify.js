/* vitrine web UI, classification pages: the dataset dashboard, the runs table and the run page
 * (model card, predictions, evaluation). A client of /api/v1, like app.js; charts are drawn by
 * Plotly, served by vitrine itself (/static/vendor/plotly.min.js), never from a CDN.
 *
 * Every URL is built from <body data-base>, so the pages work behind a path-prefix proxy. Data from
 * the API goes into the page with textContent or attributes, never parsed as HTML.
 */
(() => {
  "use strict";

  const {
    BASE, PAGE, enc, encPath, apiUrl, $, h, isNum, plural, basename, dotted, formatBytes, formatDuration,
    ApiError, api, showError, clearError, report,
  } = window.vitrine;
  const body = document.body;
  const DATASET = body.dataset.dataset || "";
  const RUN = body.dataset.run || "";
  const POLL_MS = 700;

  // ---------------------------------------------------------------------------- URLs
  const datasetApi = (name, rest = "") => apiUrl(`/datasets/${enc(name)}${rest}`);
  const runApi = (id, rest = "") => apiUrl(`/runs/${enc(id)}${rest}`);
  const thumbUrl = (name, path, size) => datasetApi(name, `/thumbs/${encPath(path)}`) + (size ? `?size=${size}` : "");
  const imageUrl = (name, path) => datasetApi(name, `/images/${encPath(path)}`);
  const runPage = (id, rest = "") => `${BASE}/runs/${enc(id)}${rest}`;
  const datasetPage = (name) => `${BASE}/datasets/${enc(name)}`;

  // ---------------------------------------------------------------------------- formatting
  const pct = (x, digits = 1) => (isNum(x) ? `${(x * 100).toFixed(digits)} %` : "—");
  const score = (x) => (isNum(x) ? x.toFixed(3) : "—");

  function formatWhen(epochSeconds) {
    if (!isNum(epochSeconds)) return "";
    return new Date(epochSeconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function stateBadge(state, id) {
    return h("span", { class: `badge state-${state || "unknown"}`, id }, state || "unknown");
  }

  // ---------------------------------------------------------------------------- charts
  const COLORS = {
    accent: "#2c5fb8", accentSoft: "#a9bfe6", text: "#1d1f23", muted: "#676b73", grid: "#e6e6e1", ok: "#1f7a3d",
    train: "#2c5fb8", val: "#e29a2d", test: "#2f9e5b", unassigned: "#9aa0a6",
  };
  const OTHER_SPLIT_COLORS = ["#8e5fb8", "#c2475b", "#4aa3b5"];
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

  function emptyChart(el, text) {
    if (window.Plotly) window.Plotly.purge(el);
    el.classList.add("chart-empty");
    el.replaceChildren(h("p", { class: "muted" }, text));
  }

  /** A precomputed histogram ({edges, counts}) as a bar chart with bars that touch. File sizes
   * are shown in KB or MB (1024-based, like the percentiles above the chart). */
  function histogram(el, summary, { color = COLORS.accent, unit = "", bytes = false } = {}) {
    const hist = summary && summary.histogram;
    if (!hist || !hist.counts || !hist.counts.length || !summary.n) {
      emptyChart(el, "No readable image to measure.");
      return null;
    }
    let scale = 1;
    if (bytes) {
      scale = summary.max >= 1024 * 1024 ? 1024 * 1024 : 1024;
      unit = scale === 1024 ? " KB" : " MB";
    }
    const label = (v) => `${+(v / scale).toFixed(bytes ? 1 : 3)}${unit}`;
    const lay = {
      height: 220, bargap: 0,
      yaxis: { title: { text: "images" }, rangemode: "tozero" },
    };
    if (summary.min === summary.max) { // every image alike: one bar, named by its value
      return plot(el, [{
        type: "bar", x: [label(summary.min)], y: [summary.n], marker: { color }, width: [0.4],
        hovertemplate: "%{x}<br>%{y} images<extra></extra>",
      }], layout({ ...lay, xaxis: { type: "category" } }));
    }
    const edges = hist.edges.map((e) => e / scale);
    const x = hist.counts.map((_, i) => (edges[i] + edges[i + 1]) / 2);
    const width = hist.counts.map((_, i) => edges[i + 1] - edges[i]);
    const ranges = hist.counts.map((_, i) => `${label(hist.edges[i])} – ${label(hist.edges[i + 1])}`);
    return plot(el, [{
      type: "bar", x, y: hist.counts, width, customdata: ranges,
      marker: { color, line: { color: "#ffffff", width: 0.5 } },
      hovertemplate: "%{customdata}<br>%{y} images<extra></extra>",
    }], layout({ ...lay, xaxis: { ticksuffix: unit, range: [edges[0], edges[edges.length - 1]] } }));
  }

  function percentileText(summary, bytes) {
    if (!summary || !summary.n) return "";
    const p = summary.percentiles || {};
    const f = (v) => (bytes ? formatBytes(v) : `${+Number(v).toFixed(2)}`);
    const parts = [];
    if (isNum(p.p5)) parts.push(`p5 ${f(p.p5)}`);
    if (isNum(p.p50)) parts.push(`median ${f(p.p50)}`);
    if (isNum(p.p95)) parts.push(`p95 ${f(p.p95)}`);
    return parts.length ? `· ${parts.join(" · ")}` : "";
  }

  // ---------------------------------------------------------------------------- jobs (training)
  const STAGES = {
    embed: "Embedding images", fit: "Fitting", evaluate: "Evaluating", train: "Training", validate: "Validating",
    load: "Loading images", epoch: "Training", done: "Finishing", cancelled: "Cancelled",
  };

  function jobText(job) {
    if (job.state === "queued") return "Waiting to start";
    if (job.state === "running") {
      let text = STAGES[job.stage] || (job.stage ? job.stage : "Starting");
      if (job.message) return `${text} · ${job.message}`;
      if (job.total) text += ` ${job.done}/${job.total}`;
      if (isNum(job.eta_seconds)) text += ` · about ${formatDuration(job.eta_seconds)} left`;
      return text;
    }
    const took = job.finished_at && job.started_at ? ` in ${formatDuration(job.finished_at - job.started_at)}` : "";
    if (job.state === "done") {
      const r = job.result || {};
      const bits = [`Trained${took}`];
      if (isNum(r.accuracy)) bits.push(`accuracy ${pct(r.accuracy)}`);
      if (isNum(r.macro_f1)) bits.push(`macro-F1 ${score(r.macro_f1)}`);
      return bits.join(" · ");
    }
    if (job.state === "cancelled") return job.message || "Cancelled";
    return (job.error && job.error.message) || "the training failed";
  }

  // ============================================================================ dataset page
  function datasetPageMain() {
    let polling = null;

    async function loadSummary() {
      const s = await api(datasetApi(DATASET));
      const splits = Object.entries(s.splits || {});
      const facts = [
        h("span", { id: "fact-samples" }, plural(s.samples, "image")),
        h("span", { id: "fact-classes" }, plural((s.classes || []).length, "class", "classes")),
        h("span", { id: "fact-splits" }, splits.length
          ? splits.map(([name, n]) => `${name} ${n}`).join(", ") : "no split"),
      ];
      $("#dataset-facts").replaceChildren(...dotted(facts));
      const src = s.source || {};
      const where = src.path || s.root || "";
      $("#dataset-source").textContent = src.kind ? `Imported from ${src.kind}${where ? `: ${where}` : ""}` : (where ? `Images in ${where}` : "");
      const problems = s.problems || [];
      const details = $("#import-problems");
      if (problems.length) {
        $("#import-problems-summary").textContent = `${plural(problems.length, "row or file", "rows or files")} skipped at import`;
        $("#import-problem-list").replaceChildren(...problems.slice(0, 200).map((p) => h("li", {},
          h("code", {}, p.row ? `${p.source}:${p.row}` : p.source), " — ", h("span", {}, p.message))));
        details.hidden = false;
      } else {
        details.hidden = true;
      }
    }

    function drawClasses(stats) {
      const classes = stats.classes || [];
      const counts = stats.counts || {};
      const order = ["train", "val", "test", "unassigned"];
      const splits = Object.keys(counts).sort((a, b) => {
        const ia = order.indexOf(a); const ib = order.indexOf(b);
        return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
      }).filter((sp) => classes.some((c) => (counts[sp] || {})[c]));
      let other = 0;
      const traces = splits.map((sp) => ({
        type: "bar", name: sp, x: classes, y: classes.map((c) => (counts[sp] || {})[c] || 0),
        marker: { color: COLORS[sp] || OTHER_SPLIT_COLORS[other++ % OTHER_SPLIT_COLORS.length] },
        hovertemplate: `%{x}<br>${sp}: %{y}<extra></extra>`,
      }));
      const el = $("#chart-classes");
      if (!classes.length) { emptyChart(el, "No class."); return; }
      const many = classes.length > 12;
      return plot(el, traces, layout({
        barmode: "stack", height: many ? 340 : 280, bargap: 0.25,
        legend: { orientation: "h", x: 0, y: 1.12, traceorder: "normal" },
        margin: { l: 56, r: 16, t: 30, b: 44 },
        xaxis: { type: "category", tickangle: many ? -40 : 0 },
        yaxis: { title: { text: "images" }, rangemode: "tozero" },
      }));
    }

    function drawCounts(stats) {
      const classes = stats.classes || [];
      const counts = stats.counts || {};
      const splits = ["train", "val", "test", "unassigned", ...Object.keys(counts).filter((s) => !["train", "val", "test", "unassigned"].includes(s))]
        .filter((sp) => counts[sp] && classes.some((c) => counts[sp][c]));
      const table = $("#counts-table");
      const total = (c) => splits.reduce((acc, sp) => acc + ((counts[sp] || {})[c] || 0), 0);
      const head = h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Class"),
        splits.map((sp) => h("th", { scope: "col", class: "num" }, sp)),
        h("th", { scope: "col", class: "num" }, "Total")));
      const rows = classes.map((c) => h("tr", { dataset: { class: c } },
        h("th", { scope: "row" }, c),
        splits.map((sp) => {
          const n = (counts[sp] || {})[c] || 0;
          return h("td", { class: n ? "num" : "num zero", title: n ? null : `no ${sp} image of ${c}` }, String(n));
        }),
        h("td", { class: "num total" }, String(total(c)))));
      const foot = h("tfoot", {}, h("tr", {},
        h("th", { scope: "row" }, "All classes"),
        splits.map((sp) => h("td", { class: "num" }, String(classes.reduce((a, c) => a + ((counts[sp] || {})[c] || 0), 0)))),
        h("td", { class: "num total" }, String(stats.total))));
      table.replaceChildren(head, h("tbody", {}, rows), foot);
      const formats = Object.entries(stats.formats || {}).map(([f, n]) => `${f} ${n}`).join(", ");
      const modes = Object.entries(stats.modes || {}).map(([m, n]) => `${m} ${n}`).join(", ");
      const ratio = isNum(stats.imbalance_ratio) ? ` · largest class / smallest: ${+stats.imbalance_ratio.toFixed(2)}` : "";
      $("#formats").textContent = formats ? `Formats: ${formats} · colour modes: ${modes}${ratio}` : ratio.replace(/^ · /, "");
    }

    function groupItem(g) {
      return h("li", {}, g.paths.map((p, i) => h("span", { class: "group-member" },
        h("a", { href: imageUrl(DATASET, p), title: "open the image" }, p),
        " ", h("span", { class: `split-pill split-${g.splits[i] || "unassigned"}` }, g.splits[i] || "no split"),
        " ", h("span", { class: "muted" }, g.labels[i]))));
    }

    function drawWarnings(stats) {
      const warnings = stats.warnings || [];
      const leakage = stats.leakage || [];
      const dups = (stats.duplicates && stats.duplicates.groups) || [];
      const unreadable = stats.unreadable || [];
      const box = $("#stats-warnings");
      $("#stats-warnings-title").textContent = leakage.length
        ? "Leakage: the same images are in several splits"
        : (warnings.length ? "Check this dataset" : "Duplicates");
      $("#stats-warning-list").replaceChildren(...warnings.map((w) => h("li", {}, w)));
      const show = (id, items, summary, render) => {
        const d = $(`#${id}`);
        d.hidden = !items.length;
        if (!items.length) return;
        $(`#${id}-summary`).textContent = summary;
        $(`#${id === "leakage" ? "leakage-list" : id === "duplicates" ? "duplicate-list" : "unreadable-list"}`)
          .replaceChildren(...items.slice(0, 100).map(render));
      };
      show("leakage", leakage, `${plural(leakage.length, "group")} of identical images across splits`, groupItem);
      const plain = dups.filter((g) => !leakage.includes(g) && !leakage.some((l) => l.sha256 === g.sha256));
      show("duplicates", plain, `${plural(plain.length, "other group")} of identical images`, groupItem);
      show("unreadable", unreadable, `${plural(unreadable.length, "unreadable image")}`, (u) => h("li", {},
        h("code", {}, u.path), " — ", h("span", {}, u.reason || "cannot be read")));
      box.hidden = !(warnings.length || leakage.length || dups.length || unreadable.length);
      box.classList.toggle("alert-error", leakage.length > 0);
      box.classList.toggle("alert-warn", leakage.length === 0);
    }

    async function loadStats() {
      const section = $("#charts");
      try {
        const stats = await api(datasetApi(DATASET, "/stats?per_image=false"));
        drawWarnings(stats);
        drawCounts(stats);
        await drawClasses(stats);
        await histogram($("#chart-width"), stats.width, { unit: " px" });
        await histogram($("#chart-height"), stats.height, { unit: " px", color: "#4a78c8" });
        await histogram($("#chart-aspect"), stats.aspect, { color: "#6b8fd3" });
        await histogram($("#chart-file-size"), stats.file_size, { bytes: true, color: "#8aa6dc" });
        $("#pct-width").textContent = percentileText(stats.width);
        $("#pct-height").textContent = percentileText(stats.height);
        $("#pct-aspect").textContent = percentileText(stats.aspect);
        $("#pct-file-size").textContent = percentileText(stats.file_size, true);
        const took = isNum(stats.elapsed_s) ? ` in ${formatDuration(stats.elapsed_s)}` : "";
        $("#stats-meta").textContent = `Measured ${plural(stats.measured, "image")} (headers only)` +
          (stats.cached ? " · from the cache" : took) + (stats.sampled ? " · a random sample" : "") +
          (stats.computed_at ? ` · computed ${String(stats.computed_at).replace("T", " ").slice(0, 16)}` : "");
      } finally {
        section.setAttribute("aria-busy", "false");
      }
    }

    async function loadSamples() {
      const box = $("#samples");
      try {
        const data = await api(datasetApi(DATASET, "/samples?per_class=8"));
        const rows = data.classes.map((label) => {
          const items = data.samples[label] || [];
          return h("div", { class: "class-row", dataset: { class: label } },
            h("h3", { class: "class-name" }, label, " ", h("span", { class: "muted" }, `(${items.length} shown)`)),
            items.length
              ? h("ul", { class: "thumb-strip" }, items.map((s) => h("li", { class: "sample", dataset: { path: s.path } },
                h("a", { href: imageUrl(DATASET, s.path), title: `${s.path}${s.split ? ` (${s.split})` : ""}` },
                  h("img", {
                    src: thumbUrl(DATASET, s.path, 160), alt: s.path, loading: "lazy", decoding: "async",
                    onerror: (event) => { event.currentTarget.closest("li").classList.add("broken"); },
                  })))))
              : h("p", { class: "muted" }, "no image"));
        });
        box.replaceChildren(...rows);
        $("#samples-meta").textContent = `up to ${data.per_class} random images per class; click one to open it`;
      } finally {
        box.setAttribute("aria-busy", "false");
      }
    }

    async function loadRuns() {
      const runs = await api(apiUrl(`/runs?dataset=${enc(DATASET)}&sort=accuracy`));
      const best = runs.slice(0, 5);
      $("#dataset-runs").replaceChildren(...best.map((r) => h("li", { dataset: { run: r.id } },
        h("a", { href: runPage(r.id) }, `${r.kind} · ${r.model}`), " ",
        isNum(r.accuracy) ? h("span", { class: "run-score" }, pct(r.accuracy)) : stateBadge(r.state))));
      $("#no-dataset-runs").hidden = runs.length > 0;
    }

    // ------------------------------------------------------------ training form
    const HELP = {
      "linear-probe": "Embeds every image once with the embedding model (cached), then fits a logistic regression on the train split. Seconds to minutes on a CPU.",
      "zero-shot": "No training: each class name becomes a text prompt for the embedding model. Evaluated on the test split.",
      finetune: "Trains a pretrained backbone end to end. Slow on a CPU: set a time budget in minutes.",
    };

    function syncForm() {
      const method = $("#train-method").value;
      for (const el of document.querySelectorAll("#train-form [data-for]")) {
        const on = el.dataset.for === "finetune" ? method === "finetune" : method !== "finetune";
        el.hidden = !on;
        if (el.matches("input, select")) el.disabled = !on;
      }
      $("#train-help").textContent = HELP[method] || "";
    }

    function formBody() {
      const method = $("#train-method").value;
      const out = { method };
      if (method === "finetune") {
        const backbone = $("#train-backbone").value;
        if (backbone) out.backbone = backbone;
        for (const [id, key, parse] of [["#train-epochs", "epochs", parseInt], ["#train-image-size", "image_size", parseInt],
          ["#train-max-minutes", "max_minutes", parseFloat]]) {
          const raw = $(id).value.trim();
          if (raw) out[key] = parse(raw, 10);
        }
      } else {
        const model = $("#train-embedding").value;
        if (model) out.embedding_model = model;
      }
      return out;
    }

    function renderJob(job) {
      const box = $("#train-job");
      box.hidden = false;
      box.dataset.state = job.state;
      box.dataset.jobId = job.id;
      const badge = $("#train-state");
      badge.textContent = job.state;
      badge.className = `badge state-${job.state}`;
      const active = job.state === "queued" || job.state === "running";
      const progress = $("#train-progress");
      if (active && isNum(job.fraction)) progress.value = job.fraction;
      else if (active) progress.removeAttribute("value");
      else progress.value = job.state === "done" ? 1 : (job.fraction || 0);
      progress.hidden = !active;
      $("#train-text").textContent = jobText(job);
      $("#train-cancel").hidden = !active;
      $("#train-button").disabled = active;
      const runId = (job.result && job.result.run_id) || job.run_id;
      const link = $("#train-run-link");
      if (runId && !active) {
        link.href = runPage(runId);
        link.textContent = job.state === "done" ? `Open the run ${runId}` : `See the run ${runId}`;
      }
      $("#train-run").hidden = !(runId && !active);
    }

    function followJob(job) {
      renderJob(job);
      if (polling) clearTimeout(polling);
      const tick = async () => {
        polling = null;
        let fresh;
        try {
          fresh = { ...(await api(apiUrl(`/jobs/${enc(job.id)}`))), run_id: job.run_id };
        } catch (err) {
          showError(err, "following the training job");
          $("#train-button").disabled = false;
          return;
        }
        renderJob(fresh);
        if (fresh.state === "queued" || fresh.state === "running") {
          polling = setTimeout(tick, POLL_MS);
          return;
        }
        if (fresh.state === "failed") showError(new ApiError(fresh.error.message, fresh.error.hint), "training failed");
        loadRuns().catch(report("runs"));
      };
      polling = setTimeout(tick, POLL_MS);
    }

    $("#train-method").addEventListener("change", syncForm);
    $("#train-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const button = $("#train-button");
      button.disabled = true;
      try {
        const job = await api(datasetApi(DATASET, "/train"), {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(formBody()),
        });
        followJob(job);
      } catch (err) {
        button.disabled = false;
        showError(err, "cannot start training");
      }
    });
    $("#train-cancel").addEventListener("click", async () => {
      const id = $("#train-job").dataset.jobId;
      if (!id) return;
      try {
        const job = await api(apiUrl(`/jobs/${enc(id)}/cancel`), { method: "POST" });
        $("#train-text").textContent = job.message || "cancelling…";
      } catch (err) {
        showError(err, "cannot cancel");
      }
    });

    async function loadOptions() {
      const options = await api(apiUrl("/train/options"));
      const fill = (select, models) => {
        for (const m of models) {
          select.append(h("option", {
            value: m.name, disabled: !m.available, title: m.available ? m.summary : m.availability_detail,
          }, m.available ? m.name : `${m.name} (not available offline)`));
        }
      };
      fill($("#train-embedding"), options.embedding_models || []);
      fill($("#train-backbone"), options.backbones || []);
    }

    async function loadJobs() {
      const jobs = await api(datasetApi(DATASET, "/jobs"));
      const last = jobs[0];
      if (!last) return;
      if (last.state === "queued" || last.state === "running") followJob(last);
      else renderJob(last);
    }

    syncForm();
    loadSummary().catch(report("dataset"));
    loadJobs().catch(report("training jobs"));
    loadRuns().catch(report("runs"));
    // describing the models may import model libraries (seconds, the first time): not in the way
    loadOptions().catch(report("training options"));
    // statistics read every image header: the first time, on a large dataset, it takes a while
    loadStats().catch(report("statistics")).finally(() => loadSamples().catch(report("samples")));
  }

  // ============================================================================ runs page
  function runsPageMain() {
    let rows = [];
    let sort = { key: "created_at", desc: true };
    let polling = null;
    const TEXT_KEYS = ["id", "kind", "dataset", "model", "state"];

    function cmp(a, b) {
      const x = a[sort.key]; const y = b[sort.key];
      if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
      if (y === null || y === undefined) return -1;
      const c = TEXT_KEYS.includes(sort.key) ? String(x).localeCompare(String(y)) : x - y;
      return sort.desc ? -c : c;
    }

    function progressText(run) {
      const p = run.progress || {};
      const bits = [];
      if (isNum(p.epoch)) bits.push(`epoch ${p.epoch}${isNum(p.epochs) ? `/${p.epochs}` : ""}`);
      if (isNum(p.eta_seconds)) bits.push(`${formatDuration(p.eta_seconds)} left`);
      return bits.join(" · ");
    }

    function render() {
      const sorted = [...rows].sort(cmp);
      $("#runs-body").replaceChildren(...sorted.map((r) => h("tr", { dataset: { run: r.id, state: r.state || "" } },
        h("td", { class: "run-id" }, h("a", { href: runPage(r.id) }, r.id)),
        h("td", { class: "nowrap" }, r.kind || ""),
        h("td", {}, r.dataset ? h("a", { href: datasetPage(r.dataset) }, r.dataset) : ""),
        h("td", { class: "model-cell" }, r.model || ""),
        h("td", {}, stateBadge(r.state), r.state === "running" ? h("span", { class: "muted small run-progress" }, progressText(r)) : null),
        h("td", { class: "num run-accuracy" }, pct(r.accuracy)),
        h("td", { class: "num run-f1" }, score(r.macro_f1)),
        h("td", { class: "num run-speed" }, isNum(r.images_per_second) ? `${r.images_per_second.toFixed(r.images_per_second < 10 ? 1 : 0)} img/s` : "—"),
        h("td", { class: "num muted" }, formatWhen(r.created_at)))));
      $("#no-runs").hidden = rows.length > 0;
      $("#runs-table").hidden = rows.length === 0;
      for (const b of document.querySelectorAll("#runs-table .sort")) {
        const th = b.closest("th");
        if (b.dataset.sort === sort.key) th.setAttribute("aria-sort", sort.desc ? "descending" : "ascending");
        else th.removeAttribute("aria-sort");
      }
    }

    async function load() {
      const query = DATASET ? `?dataset=${enc(DATASET)}` : "";
      try {
        rows = await api(apiUrl(`/runs${query}`));
        render();
      } finally {
        $("#runs-table").setAttribute("aria-busy", "false");
      }
      if (polling) clearTimeout(polling);
      if (rows.some((r) => r.state === "running" || r.state === "created")) {
        polling = setTimeout(() => load().catch(report("runs")), 2000);
      }
    }

    for (const b of document.querySelectorAll("#runs-table .sort")) {
      b.addEventListener("click", () => {
        const key = b.dataset.sort;
        sort = sort.key === key ? { key, desc: !sort.desc } : { key, desc: !TEXT_KEYS.includes(key) };
        render();
      });
    }
    load().catch(report("runs"));
  }

  // ============================================================================ run page
  function runPageMain() {
    const sampleSelect = $("#sample-select");
    const uploadInput = $("#predict-upload");
    let seq = 0;
    let previewUrl = null;
    let polling = null;
    let datasetName = DATASET;

    function fillCard(summary) {
      $("#card-kind").textContent = summary.kind || "";
      $("#card-model").textContent = summary.model || "";
      if (summary.dataset) {
        $("#card-dataset").replaceChildren(h("a", { href: datasetPage(summary.dataset) }, summary.dataset));
      }
      $("#card-accuracy").textContent = pct(summary.accuracy);
      $("#card-macro-f1").textContent = score(summary.macro_f1);
    }

    function renderStatus(detail) {
      const r = detail.record || {};
      const s = detail.summary || {};
      const bits = [stateBadge(r.state, "run-state")];
      if (isNum(s.accuracy)) {
        bits.push(h("span", {}, `accuracy ${pct(s.accuracy)} · macro-F1 ${score(s.macro_f1)}` +
          (s.evaluated_on ? ` on the ${s.evaluated_on === "all" ? "whole dataset" : `${s.evaluated_on} split`}` : "")));
      }
      if (isNum(s.images_per_second)) bits.push(h("span", { class: "muted" }, `${s.images_per_second.toFixed(1)} images/s`));
      if (isNum(r.created_at)) bits.push(h("span", { class: "muted" }, `created ${formatWhen(r.created_at)}`));
      const lines = [h("p", { class: "status-facts" }, dotted(bits))];
      if (r.error) lines.push(h("p", { class: "text-warn", id: "run-error" }, r.error));
      $("#run-status").replaceChildren(...lines);

      const config = Object.entries(r.config || {}).filter(([, v]) => v !== null && v !== "" && typeof v !== "object");
      $("#run-config").hidden = !config.length;
      $("#run-config-list").replaceChildren(...config.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));

      const active = r.state === "running" || r.state === "created";
      const p = r.progress || {};
      $("#run-job").hidden = !active;
      if (active) {
        const progress = $("#run-progress");
        const frac = isNum(p.epoch) && isNum(p.epochs) && p.epochs
          ? ((p.epoch - 1) + (isNum(p.step) && isNum(p.steps) && p.steps ? p.step / p.steps : 0)) / p.epochs : null;
        if (isNum(frac)) progress.value = Math.min(1, Math.max(0, frac)); else progress.removeAttribute("value");
        const text = [];
        if (p.stage) text.push(STAGES[p.stage] || p.stage);
        if (isNum(p.epoch)) text.push(`epoch ${p.epoch}${isNum(p.epochs) ? `/${p.epochs}` : ""}`);
        if (isNum(p.step)) text.push(`step ${p.step}${isNum(p.steps) ? `/${p.steps}` : ""}`);
        if (isNum(p.eta_seconds)) text.push(`about ${formatDuration(p.eta_seconds)} left`);
        $("#run-progress-text").textContent = text.join(" · ");
      }
      return active;
    }

    /** The confusion matrix from metrics.json (or the run record): {labels, matrix} or null. */
    function findConfusion(detail) {
      const record = detail.record || {};
      const candidates = [detail.metrics, ...["test", "all", "val"].map((sp) => (record.metrics || {})[sp])];
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

    function perClassRows(detail) {
      let rows = detail.per_class;
      if (rows && !Array.isArray(rows) && typeof rows === "object") {
        rows = Array.isArray(rows.classes) ? rows.classes
          : Object.entries(rows).filter(([, v]) => v && typeof v === "object").map(([label, v]) => ({ class: label, ...v }));
      }
      if (!Array.isArray(rows)) {
        const m = detail.metrics || {};
        const pc = m.per_class;
        if (Array.isArray(pc)) rows = pc;
        else if (pc && typeof pc === "object") rows = Object.entries(pc).map(([label, v]) => ({ class: label, ...v }));
      }
      return Array.isArray(rows) ? rows : [];
    }

    function drawEvaluation(detail) {
      const cm = findConfusion(detail);
      const rows = perClassRows(detail);
      const files = detail.files || [];
      $("#evaluation").hidden = !(cm || rows.length);
      $("#confusion-download").hidden = !files.includes("confusion.csv");
      $("#per-class-download").hidden = !files.includes("per_class.csv");
      const s = detail.summary || {};
      $("#evaluation-meta").textContent = s.evaluated_on
        ? `on the ${s.evaluated_on === "all" ? "whole dataset" : `${s.evaluated_on} split`}` : "";
      if (cm) {
        const n = cm.labels.length;
        const rowsum = cm.matrix.map((r) => r.reduce((a, b) => a + b, 0));
        const z = cm.matrix.map((r, i) => r.map((v) => (rowsum[i] ? v / rowsum[i] : 0)));
        const el = $("#chart-confusion");
        const size = Math.min(640, Math.max(300, 120 + n * 36));
        plot(el, [{
          type: "heatmap", x: cm.labels, y: cm.labels, z, customdata: cm.matrix,
          zmin: 0, zmax: 1, colorscale: [[0, "#f4f6fb"], [0.5, "#7d9bd6"], [1, COLORS.accent]],
          colorbar: { title: { text: "share of row" }, tickformat: ".0%", thickness: 12 },
          hovertemplate: "true %{y}<br>predicted %{x}<br>%{customdata} images (%{z:.0%})<extra></extra>",
          xgap: 1, ygap: 1,
        }], layout({
          height: size,
          margin: { l: 90, r: 10, t: 10, b: 90 },
          xaxis: { title: { text: "predicted" }, type: "category", tickangle: n > 8 ? -40 : 0, showgrid: false },
          yaxis: { title: { text: "true" }, type: "category", autorange: "reversed", showgrid: false },
          annotations: n <= 15 ? cm.matrix.flatMap((r, i) => r.map((v, j) => ({
            x: cm.labels[j], y: cm.labels[i], text: String(v), showarrow: false,
            font: { color: z[i][j] > 0.55 ? "#ffffff" : COLORS.text, size: 12 },
          }))) : [],
        }));
      }
      if (rows.length) {
        const keys = ["precision", "recall", "f1", "support"].filter((k) => rows.some((r) => r[k] !== undefined));
        const label = (r) => r.class ?? r.label ?? r.name ?? "";
        $("#per-class-table").replaceChildren(
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Class"), keys.map((k) => h("th", { scope: "col", class: "num" }, k)))),
          h("tbody", {}, rows.map((r) => h("tr", {},
            h("th", { scope: "row" }, String(label(r))),
            keys.map((k) => h("td", { class: "num" }, k === "support" ? String(r[k] ?? "") : score(r[k])))))));
      }
    }

    async function loadRun() {
      const detail = await api(runApi(RUN));
      fillCard(detail.summary || {});
      datasetName = (detail.record && detail.record.dataset) || datasetName;
      const active = renderStatus(detail);
      drawEvaluation(detail);
      if (polling) clearTimeout(polling);
      if (active) polling = setTimeout(() => loadRun().catch(report("run")), 2000);
      return detail;
    }

    // ------------------------------------------------------------ predictions
    function setImage(src, caption) {
      const img = $("#predict-image");
      img.src = src;
      img.alt = caption;
      $("#predict-caption").replaceChildren(...(Array.isArray(caption) ? caption : [caption]));
    }

    function renderPrediction(result, trueLabel) {
      const classes = result.classes || [];
      const top = classes[0];
      const el = $("#chart-predict");
      const shown = classes.slice(0, 10);
      const labels = shown.map((c) => c.label).reverse();
      const probs = shown.map((c) => c.probability).reverse();
      const colors = labels.map((l, i) => (i === labels.length - 1 ? COLORS.accent : (trueLabel && l === trueLabel ? COLORS.ok : COLORS.accentSoft)));
      plot(el, [{
        type: "bar", orientation: "h", y: labels, x: probs, marker: { color: colors },
        text: probs.map((p) => pct(p)), textposition: "outside", cliponaxis: false,
        hovertemplate: "%{y}: %{x:.1%}<extra></extra>",
      }], layout({
        height: Math.max(200, 60 + shown.length * 34),
        margin: { l: 12, r: 60, t: 8, b: 36 }, bargap: 0.3,
        xaxis: { range: [0, 1.0], tickformat: ".0%", fixedrange: true },
        yaxis: { type: "category", fixedrange: true, ticksuffix: "  " },
      }));
      const topText = $("#predict-top");
      if (top) {
        const verdict = trueLabel ? (top.label === trueLabel ? h("span", { class: "verdict ok" }, "correct")
          : h("span", { class: "verdict bad" }, `true class: ${trueLabel}`)) : null;
        topText.replaceChildren("Most likely ", h("strong", { id: "predict-label" }, top.label), ` (${pct(top.probability)})`,
          verdict ? " · " : "", verdict || "");
      } else {
        topText.textContent = "No class.";
      }
      $("#predict-list").replaceChildren(...classes.map((c) => h("li", { class: "predicted", dataset: { label: c.label } },
        h("span", { class: "label" }, c.label), " ", h("span", { class: "probability" }, pct(c.probability)))));
      const m = result.model || {};
      const ms = isNum(result.seconds) ? result.seconds * 1000 : null;
      $("#predict-meta").textContent = [`${m.kind || ""} ${m.model || ""}`,
        ms === null ? "" : `answered in ${ms < 1 ? "under 1" : Math.round(ms)} ms`].filter(Boolean).join(" · ");
      if (m.id) fillCard({ ...m, accuracy: (m.metrics || {}).accuracy, macro_f1: (m.metrics || {}).macro_f1 });
    }

    async function predict(run, describe) {
      const mine = ++seq;
      const box = $("#prediction");
      box.hidden = false;
      box.setAttribute("aria-busy", "true");
      clearError();
      try {
        const { result, trueLabel } = await run();
        if (mine !== seq) return;
        renderPrediction(result, trueLabel);
      } catch (err) {
        if (mine !== seq) return;
        showError(err, describe);
      } finally {
        if (mine === seq) box.setAttribute("aria-busy", "false");
      }
    }

    function predictSample(path) {
      if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
      const option = [...sampleSelect.options].find((o) => o.value === path);
      const trueLabel = option ? option.dataset.label : "";
      setImage(thumbUrl(datasetName, path, 512), [h("code", {}, path), trueLabel ? ` · labelled ${trueLabel}` : ""]);
      return predict(async () => {
        const params = new URLSearchParams({ sample: path, top: "10" });
        const result = await api(runApi(RUN, `/predict?${params}`));
        return { result, trueLabel: (result.image && result.image.label) || trueLabel };
      }, `classify ${path}`);
    }

    function predictUpload(file) {
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = URL.createObjectURL(file);
      setImage(previewUrl, [h("span", {}, file.name), " · uploaded"]);
      sampleSelect.value = "";
      return predict(async () => {
        const fd = new FormData();
        fd.append("file", file, file.name);
        fd.append("top", "10");
        return { result: await api(runApi(RUN, "/predict"), { method: "POST", body: fd }), trueLabel: "" };
      }, `classify ${file.name}`);
    }

    async function loadSamples() {
      if (!datasetName) {
        sampleSelect.replaceChildren(h("option", { value: "" }, "No dataset for this run"));
        return;
      }
      let data;
      try {
        data = await api(datasetApi(datasetName, "/samples?per_class=8"));
      } catch (err) {
        sampleSelect.replaceChildren(h("option", { value: "" }, "Dataset images unavailable"));
        throw err;
      }
      const groups = data.classes.filter((c) => (data.samples[c] || []).length).map((label) => h("optgroup", { label },
        data.samples[label].map((s) => h("option", { value: s.path, dataset: { label } },
          `${basename(s.path)}${s.split ? ` (${s.split})` : ""}`))));
      sampleSelect.replaceChildren(h("option", { value: "" }, "Choose a dataset image…"), ...groups);
      sampleSelect.disabled = false;
      const wanted = new URLSearchParams(window.location.search).get("sample");
      if (wanted && [...sampleSelect.options].some((o) => o.value === wanted)) {
        sampleSelect.value = wanted;
        predictSample(wanted);
      }
    }

    sampleSelect.addEventListener("change", () => {
      const path = sampleSelect.value;
      if (!path) return;
      const url = new URL(window.location.href);
      url.searchParams.set("sample", path);
      window.history.replaceState(null, "", url.pathname + url.search);
      predictSample(path);
    });
    uploadInput.addEventListener("change", () => {
      const file = uploadInput.files && uploadInput.files[0];
      if (!file) return;
      uploadInput.value = "";
      const url = new URL(window.location.href);
      url.searchParams.delete("sample");
      window.history.replaceState(null, "", url.pathname + url.search);
      predictUpload(file);
    });

    loadRun().catch(report("run")).finally(() => loadSamples().catch(report("dataset images")));
  }

  // ---------------------------------------------------------------------------- start
  if (PAGE === "dataset") datasetPageMain();
  else if (PAGE === "runs") runsPageMain();
  else if (PAGE === "run") runPageMain();
})();
