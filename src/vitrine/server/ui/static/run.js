/* vitrine web UI, a classification run's page (/runs/{id} and /runs/{id}/predict): model card,
 * predictions on dataset samples and uploads, evaluation with Plotly charts, and error browsing:
 * a click on a confusion-matrix cell (or on one of the most frequent mistakes listed under it)
 * shows that cell's images with their predicted probabilities
 * (GET /api/v1/runs/{id}/predictions?true=A&predicted=B). Helpers come from common.js.
 */
(() => {
  "use strict";

  const {
    $, DATASET, enc, encPath, apiUrl, h, isNum, plural, basename, dotted, formatDuration, pct, score, formatWhen, stateBadge,
    datasetApi, datasetThumbUrl, datasetPage, COLORS, layout, plot, findConfusion, STAGES, api, showError, clearError,
    report, fetchJob, isActive,
  } = window.vitrine;
  const body = document.body;
  const RUN = body.dataset.run || "";
  const runApi = (id, rest = "") => apiUrl(`/runs/${enc(id)}${rest}`);

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
      if (summary.kind === "embedding") { // an embedding model scored by compare-embeddings: no classifier to try
        $("#card-accuracy").previousElementSibling.textContent = "kNN@10 accuracy";
        $("#card-accuracy").textContent = pct(summary.knn10_accuracy);
        $("#card-macro-f1").previousElementSibling.textContent = "Probe accuracy";
        $("#card-macro-f1").textContent = pct(summary.probe_accuracy);
        $("#predict").hidden = true;
      }
    }

    function renderStatus(detail) {
      const r = detail.record || {};
      const s = detail.summary || {};
      const bits = [stateBadge(r.state, "run-state")];
      if (isNum(s.accuracy)) {
        bits.push(h("span", {}, `accuracy ${pct(s.accuracy)} · macro-F1 ${score(s.macro_f1)}` +
          (s.evaluated_on ? ` on the ${s.evaluated_on === "all" ? "whole dataset" : `${s.evaluated_on} split`}` : "")));
      }
      if (s.random_weights) bits.push(h("span", { class: "badge badge-random" }, "random weights: speed only"));
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
      let drawn = null;
      if (cm) {
        const n = cm.labels.length;
        const rowsum = cm.matrix.map((r) => r.reduce((a, b) => a + b, 0));
        const z = cm.matrix.map((r, i) => r.map((v) => (rowsum[i] ? v / rowsum[i] : 0)));
        const el = $("#chart-confusion");
        const size = Math.min(640, Math.max(300, 120 + n * 36));
        drawn = plot(el, [{
          type: "heatmap", x: cm.labels, y: cm.labels, z, customdata: cm.matrix,
          zmin: 0, zmax: 1, colorscale: [[0, "#f4f6fb"], [0.5, "#7d9bd6"], [1, COLORS.accent]],
          colorbar: { title: { text: "share of row" }, tickformat: ".0%", thickness: 12 },
          hovertemplate: "true %{y}<br>predicted %{x}<br>%{customdata} images (%{z:.0%})<br>click to see them<extra></extra>",
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
      if (cm) {
        Promise.resolve(drawn).then(() => bindCells(cm)).catch(report("confusion matrix"));
        showPairs(cm);
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

    // ------------------------------------------------------------ error browsing
    // The images of one confusion-matrix cell (true class A, predicted B): in the URL as
    // ?true=A&predicted=B, so a reload or a shared link opens the same cell.
    const CELL_PAGE = 24;
    let cellSeq = 0;
    let cell = null; // {true, predicted, offset, sort}
    let cellsBound = false;

    function bindCells(cm) {
      const el = $("#chart-confusion");
      if (cellsBound || typeof el.on !== "function") return;
      cellsBound = true;
      el.on("plotly_click", (event) => {
        const point = event && event.points && event.points[0];
        if (point) openCell(String(point.y), String(point.x), 0);
      });
      const wanted = new URLSearchParams(window.location.search);
      if (wanted.get("true") && wanted.get("predicted") && cm.labels.includes(wanted.get("true"))
          && cm.labels.includes(wanted.get("predicted"))) {
        openCell(wanted.get("true"), wanted.get("predicted"), 0, wanted.get("cell_sort") || "confidence", false);
      }
    }

    function showPairs(cm) {
      const pairs = [];
      cm.matrix.forEach((r, i) => r.forEach((v, j) => { if (i !== j && v > 0) pairs.push([v, cm.labels[i], cm.labels[j]]); }));
      pairs.sort((a, b) => b[0] - a[0] || a[1].localeCompare(b[1]) || a[2].localeCompare(b[2]));
      const list = $("#cell-pairs");
      list.replaceChildren(...pairs.slice(0, 12).map(([n, t, p]) => h("li", {},
        h("button", {
          type: "button", dataset: { true: t, predicted: p }, "aria-pressed": "false",
          title: `${plural(n, "image")} of class ${t} predicted ${p}`,
          onclick: () => openCell(t, p, 0),
        }, `${t} → ${p} (${n})`))));
      $("#cell-hint").textContent = pairs.length
        ? "Click a cell to see its images and what the model predicted for each. The most frequent mistakes:"
        : "Click a cell to see its images and what the model predicted for each (no mistake on this split).";
    }

    function probList(img) {
      const items = img.top.map((c) => ({ ...c, top: c.label === img.predicted }));
      if (!items.some((c) => c.label === img.true)) items.push({ label: img.true, probability: img.p_true, top: false });
      return h("ul", { class: "prob-list" }, items.map((c) => {
        const isTrue = c.label === img.true;
        return h("li", { class: `prob${isTrue ? " true" : ""}${c.top ? " top" : ""}`, dataset: { label: c.label } },
          h("span", { class: "prob-bar", title: `${c.label}: ${pct(c.probability)}${isTrue ? " (true class)" : ""}` },
            h("span", { class: "prob-fill", style: `width: ${Math.max(0, Math.min(100, c.probability * 100)).toFixed(1)}%` }),
            h("span", { class: "prob-label" }, isTrue ? `${c.label} (true)` : c.label)),
          h("span", { class: "prob-value" }, pct(c.probability)));
      }));
    }

    function cellCard(img) {
      const link = datasetApi(datasetName, `/images/${encPath(img.path)}`);
      return h("li", { class: "result", dataset: { path: img.path } },
        h("a", { class: "result-link", href: link, title: img.path },
          h("div", { class: "thumb" }, h("img", {
            src: datasetThumbUrl(datasetName, img.path, 320), alt: img.path, loading: "lazy", decoding: "async",
            onerror: (event) => event.currentTarget.closest(".thumb").classList.add("broken"),
          })),
          h("div", { class: "result-text" },
            h("span", { class: "caption" }, img.path),
            probList(img))));
    }

    function cellNote(message, hint, canEvaluate = false) {
      $("#cell-note").hidden = !message;
      $("#cell-note-message").textContent = message || "";
      $("#cell-note-hint").textContent = hint ? `Hint: ${hint}` : "";
      $("#cell-evaluate").hidden = !canEvaluate;
      if (!canEvaluate) $("#cell-evaluate-text").textContent = "";
    }

    // A run evaluated before per-image predictions were kept: evaluate it again (a job), then
    // show the cell that was asked for.
    let evaluatedOn = null;
    $("#cell-evaluate").addEventListener("click", async () => {
      const button = $("#cell-evaluate");
      const text = $("#cell-evaluate-text");
      button.disabled = true;
      try {
        let job = await api(runApi(RUN, "/evaluate"), {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify(evaluatedOn ? { split: evaluatedOn } : {}),
        });
        while (isActive(job.state)) {
          text.textContent = job.message || (job.state === "queued" ? "waiting to start…" : "evaluating…");
          await new Promise((resolve) => setTimeout(resolve, 700));
          job = await fetchJob(job.id);
        }
        if (job.state !== "done") {
          throw Object.assign(new Error((job.error && job.error.message) || `the evaluation ${job.state}`),
            { hint: job.error && job.error.hint });
        }
        text.textContent = "";
        await loadRun();
        if (cell) openCell(cell.true, cell.predicted, 0);
      } catch (err) {
        text.textContent = "";
        showError(err, "evaluate the run again");
      } finally {
        button.disabled = false;
      }
    });

    async function openCell(trueLabel, predicted, offset, sort, push = true) {
      cell = { true: trueLabel, predicted, offset, sort: sort || (cell && cell.sort) || "confidence" };
      const mine = ++cellSeq;
      const box = $("#cell-browser");
      box.hidden = false;
      box.setAttribute("aria-busy", "true");
      $("#cell-sort").value = cell.sort;
      $("#cell-title").textContent = trueLabel === predicted
        ? `${trueLabel}, predicted correctly` : `True ${trueLabel}, predicted ${predicted}`;
      for (const b of document.querySelectorAll("#cell-pairs button")) {
        b.setAttribute("aria-pressed", b.dataset.true === trueLabel && b.dataset.predicted === predicted ? "true" : "false");
      }
      if (push) {
        const url = new URL(window.location.href);
        url.searchParams.set("true", trueLabel);
        url.searchParams.set("predicted", predicted);
        if (cell.sort !== "confidence") url.searchParams.set("cell_sort", cell.sort); else url.searchParams.delete("cell_sort");
        window.history.replaceState(null, "", url.pathname + url.search);
      }
      const params = new URLSearchParams({ true: trueLabel, predicted, sort: cell.sort, offset: String(offset), limit: String(CELL_PAGE) });
      try {
        const data = await api(runApi(RUN, `/predictions?${params}`));
        if (mine !== cellSeq) return;
        cellNote(null);
        $("#cell-images").replaceChildren(...data.images.map(cellCard));
        $("#cell-meta").textContent = `${plural(data.total, "image")} of the ${data.split === "all" ? "whole dataset" : `${data.split} split`}`
          + (data.total ? " · bars: the model's probabilities (top 3, and the true class)" : "");
        const end = offset + data.images.length;
        $("#cell-pager").hidden = offset === 0 && end >= data.total;
        $("#cell-prev").disabled = offset === 0;
        $("#cell-next").disabled = end >= data.total;
        $("#cell-page-info").textContent = data.images.length ? `${offset + 1}–${end} of ${data.total}` : "";
        if (!data.total) cellNote("No image in this cell.", null);
      } catch (err) {
        if (mine !== cellSeq) return;
        $("#cell-images").replaceChildren();
        $("#cell-pager").hidden = true;
        $("#cell-meta").textContent = "";
        cellNote(err.message, err.hint, err.code === "no_predictions" && !/submission/.test(err.message));
      } finally {
        if (mine === cellSeq) box.setAttribute("aria-busy", "false");
      }
    }

    $("#cell-sort").addEventListener("change", () => { if (cell) openCell(cell.true, cell.predicted, 0, $("#cell-sort").value); });
    $("#cell-prev").addEventListener("click", () => { if (cell) openCell(cell.true, cell.predicted, Math.max(0, cell.offset - CELL_PAGE)); });
    $("#cell-next").addEventListener("click", () => { if (cell) openCell(cell.true, cell.predicted, cell.offset + CELL_PAGE); });
    $("#cell-close").addEventListener("click", () => {
      cellSeq += 1;
      cell = null;
      $("#cell-browser").hidden = true;
      for (const b of document.querySelectorAll("#cell-pairs button")) b.setAttribute("aria-pressed", "false");
      const url = new URL(window.location.href);
      for (const k of ["true", "predicted", "cell_sort"]) url.searchParams.delete(k);
      window.history.replaceState(null, "", url.pathname + url.search);
    });

    async function loadRun() {
      const detail = await api(runApi(RUN));
      fillCard(detail.summary || {});
      datasetName = (detail.record && detail.record.dataset) || datasetName;
      evaluatedOn = (detail.summary && detail.summary.evaluated_on) || null;
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
      setImage(datasetThumbUrl(datasetName, path, 512), [h("code", {}, path), trueLabel ? ` · labelled ${trueLabel}` : ""]);
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
      if ($("#predict").hidden) return; // nothing to predict with (an embedding run)
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

  runPageMain();
})();
