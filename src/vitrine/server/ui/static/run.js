/* vitrine web UI, a classification run's page (/runs/{id} and /runs/{id}/predict): model card,
 * predictions on dataset samples and uploads, evaluation with Plotly charts. Helpers come from
 * common.js.
 */
(() => {
  "use strict";

  const {
    $, DATASET, enc, apiUrl, h, isNum, basename, dotted, formatDuration, pct, score, formatWhen, stateBadge,
    datasetApi, datasetThumbUrl, datasetPage, COLORS, layout, plot, findConfusion, STAGES, api, showError, clearError,
    report,
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
