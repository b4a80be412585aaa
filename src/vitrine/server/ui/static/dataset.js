/* vitrine web UI, the dataset dashboard (/datasets/{name}): splits and classes, image statistics
 * with Plotly charts (served by vitrine itself, /static/vendor/plotly.min.js, never from a CDN),
 * samples, and training a classifier with its live progress. Helpers come from common.js.
 */
(() => {
  "use strict";

  const {
    $, DATASET, enc, encPath, apiUrl, h, isNum, plural, dotted, formatBytes, formatDuration, pct, stateBadge,
    datasetApi, datasetThumbUrl, runPage, COLORS, layout, plot, jobText, ApiError, isActive, showJobState, api,
    showError, clearError, report, fetchJob, cancelJob,
  } = window.vitrine;
  const body = document.body;
  const POLL_MS = 700;
  const imageUrl = (name, path) => datasetApi(name, `/images/${encPath(path)}`);

  // ---------------------------------------------------------------------------- charts
  const OTHER_SPLIT_COLORS = ["#8e5fb8", "#c2475b", "#4aa3b5"];

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
                    src: datasetThumbUrl(DATASET, s.path, 160), alt: s.path, loading: "lazy", decoding: "async",
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
      showJobState($("#train-job"), $("#train-state"), job);
      const active = isActive(job.state);
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
          fresh = { ...(await fetchJob(job.id)), run_id: job.run_id };
        } catch (err) {
          showError(err, "following the training job");
          $("#train-button").disabled = false;
          return;
        }
        renderJob(fresh);
        if (isActive(fresh.state)) {
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
        const job = await cancelJob(id);
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
      if (isActive(last.state)) followJob(last);
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

  datasetPageMain();
})();
