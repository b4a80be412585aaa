/* vitrine web UI, detection runs: the run page (/detection/runs/{id}: state and live progress of
 * its training job, cancel, box and mask metrics, the per-class AP table, PR curves with Plotly
 * served by vitrine itself) and, on the runs page (/runs), the table of detection runs with their
 * mAP and the "Train a detector" form. Helpers come from common.js (window.vitrine).
 */
(() => {
  "use strict";

  const { BASE, $, h, enc, apiUrl, api, isNum, formatDuration, ApiError, showError, clearError, report } = window.vitrine;
  const body = document.body;
  const fmt = (x, digits = 3) => (isNum(x) ? x.toFixed(digits) : "–");
  const runUrl = (id, jobId) => `${BASE}/detection/runs/${enc(id)}${jobId ? `?job_id=${enc(jobId)}` : ""}`;
  const TYPES = { bbox: "Boxes", segm: "Masks" };
  const ACTIVE = ["queued", "running"];

  function jobText(job) {
    if (job.state === "queued") return "Waiting to start";
    if (job.state === "running") {
      let text = job.stage === "train" ? "Training" : job.stage ? job.stage : "Starting";
      if (job.message) return `${text} · ${job.message}`;
      if (job.total) text += ` ${job.done}/${job.total}`;
      if (isNum(job.eta_seconds)) text += ` · about ${formatDuration(job.eta_seconds)} left`;
      return text;
    }
    if (job.state === "done") {
      const took = job.finished_at && job.started_at ? ` in ${formatDuration(job.finished_at - job.started_at)}` : "";
      return `Trained${took}`;
    }
    if (job.state === "cancelled") return job.message || "Cancelled: the run keeps its last checkpoint";
    return (job.error && job.error.message) || "the training failed";
  }

  // ============================================================================ run page
  function runPageMain() {
    const RUN = body.dataset.run;
    let jobId = body.dataset.job || "";
    let timer = null;
    let shownState = null;

    function showJob(job) {
      const box = $("#det-job");
      box.hidden = false;
      box.dataset.state = job.state;
      $("#det-job-state").textContent = job.state;
      $("#det-job-state").className = `badge state-${job.state}`;
      $("#det-job-text").textContent = jobText(job);
      const bar = $("#det-progress");
      if (job.state === "running" && job.total) bar.value = job.done / job.total;
      else if (job.state === "done") bar.value = 1;
      else bar.removeAttribute("value");
      $("#det-cancel").hidden = !ACTIVE.includes(job.state);
    }

    function metricsRows(summary) {
      return ["bbox", "segm"]
        .filter((t) => isNum(summary[`${t}_map50`]) || isNum(summary[`${t}_map`]))
        .map((t) =>
          h("tr", { dataset: { type: t } },
            h("th", { scope: "row" }, TYPES[t]),
            ...["map50", "map", "precision", "recall", "f1", "mean_iou"].map((k) =>
              h("td", { class: "num" }, fmt(summary[`${t}_${k}`])))));
    }

    function classTable(perClass, types) {
      const head = $("#det-classes-head");
      const cols = [h("th", { scope: "col" }, "Class"), h("th", { scope: "col", class: "num" }, "Objects")];
      types.forEach((t) => {
        cols.push(h("th", { scope: "col", class: "num" }, `${TYPES[t]} AP@.5`));
        cols.push(h("th", { scope: "col", class: "num" }, `${TYPES[t]} AP@.5:.95`));
      });
      cols.push(h("th", { scope: "col", class: "num" }, "P"), h("th", { scope: "col", class: "num" }, "R"),
        h("th", { scope: "col", class: "num" }, "F1"));
      head.replaceChildren(...cols);
      const first = perClass[types[0]] || [];
      const rows = first.map((row, i) => {
        const cells = [h("th", { scope: "row" }, row.class), h("td", { class: "num" }, String(row.gt ?? ""))];
        types.forEach((t) => {
          const r = (perClass[t] || [])[i] || {};
          cells.push(h("td", { class: "num" }, fmt(r.ap50)), h("td", { class: "num" }, fmt(r.ap)));
        });
        cells.push(h("td", { class: "num" }, fmt(row.precision)), h("td", { class: "num" }, fmt(row.recall)),
          h("td", { class: "num" }, fmt(row.f1)));
        return h("tr", {}, ...cells);
      });
      $("#det-classes-body").replaceChildren(...rows);
    }

    async function loadCurves() {
      const el = $("#det-pr");
      if (!window.Plotly) {
        throw new ApiError("the chart library (plotly.min.js) did not load",
          "reload the page; the server serves it at /static/vendor/plotly.min.js");
      }
      const fig = await api(apiUrl(`/detection/runs/${enc(RUN)}/pr-curves`));
      $("#det-pr-empty").hidden = true;
      const layout = { ...(fig.layout || {}), autosize: true, height: 380, margin: { l: 60, r: 20, t: 70, b: 50 } };
      await window.Plotly.react(el, fig.data || [], layout, { responsive: true, displaylogo: false });
    }

    async function loadRun() {
      let d;
      try {
        d = await api(apiUrl(`/detection/runs/${enc(RUN)}`));
      } catch (err) {
        if (err.status === 404 && jobId) return null; // the job has not made the run folder yet
        throw err;
      }
      const r = d.record || {};
      const s = d.summary || {};
      $("#det-run-state").textContent = r.state || "unknown";
      $("#det-run-state").className = `badge state-${r.state || ""}`;
      $("#det-try").hidden = !["done", "cancelled"].includes(r.state);
      const cfg = r.config || {};
      $("#det-run-meta").textContent = [
        `${r.kind || "detection"} run`, r.dataset ? `dataset ${r.dataset}` : "", r.model || "",
        cfg.image_size ? `image size ${cfg.image_size}` : "",
      ].filter(Boolean).join(" · ");
      const rows = metricsRows(s);
      $("#det-metrics-body").replaceChildren(...rows);
      $("#det-metrics").setAttribute("aria-busy", "false");
      $("#det-no-metrics").hidden = rows.length > 0;
      $("#det-eval-meta").textContent = rows.length ? [
        s.evaluated_on ? `on the ${s.evaluated_on} split` : "",
        isNum(s.n_images) ? `${s.n_images} images` : "",
        isNum(s.ms_per_image) ? `inference ${fmt(s.ms_per_image, 1)} ms/image` : "",
        `at score ≥ ${cfg.score_threshold ?? 0.5}, IoU ≥ ${cfg.iou_threshold ?? 0.5}`,
      ].filter(Boolean).join(" · ") : "";
      if ((d.iou_types || []).length) classTable(d.per_class || {}, d.iou_types);
      if (!jobId && d.job) jobId = d.job.id;
      if (d.job) showJob(d.job);
      const evaluated = (d.iou_types || []).length > 0;
      $("#det-classes").hidden = !evaluated;
      $("#det-pr").hidden = !evaluated;
      $("#det-pr-empty").hidden = evaluated;
      if (evaluated && shownState !== r.state) {
        shownState = r.state;
        await loadCurves();
      }
      return d;
    }

    async function tick() {
      let active = false;
      if (jobId) {
        const job = await api(apiUrl(`/jobs/${enc(jobId)}`));
        showJob(job);
        active = ACTIVE.includes(job.state);
      }
      const d = await loadRun();
      if (!jobId && d && ACTIVE.includes((d.record || {}).state)) active = true;
      if (active) timer = setTimeout(() => tick().catch(report("following the training")), 2000);
    }

    $("#det-cancel").addEventListener("click", async () => {
      if (!jobId) return;
      try {
        const job = await api(apiUrl(`/jobs/${enc(jobId)}/cancel`), { method: "POST" });
        showJob(job);
      } catch (err) {
        showError(err, "cannot cancel");
      }
    });
    tick().catch(report(`loading run ${RUN}`));
    window.addEventListener("beforeunload", () => clearTimeout(timer));
  }

  // ============================================================================ runs page
  function runsPageMain() {
    async function loadRuns() {
      const rows = await api(apiUrl("/detection/runs"));
      const table = $("#det-runs-table");
      table.setAttribute("aria-busy", "false");
      $("#no-det-runs").hidden = rows.length > 0;
      $("#det-runs-body").replaceChildren(...rows.map((r) =>
        h("tr", {},
          h("th", { scope: "row" }, h("a", { href: runUrl(r.id) }, r.id)),
          h("td", {}, r.kind || ""),
          h("td", {}, r.dataset || ""),
          h("td", {}, r.model || ""),
          h("td", {}, h("span", { class: `badge state-${r.state || ""}` }, r.state || "")),
          h("td", { class: "num" }, fmt(r.bbox_map50)),
          h("td", { class: "num" }, fmt(r.bbox_map)),
          h("td", { class: "num" }, fmt(r.segm_map50)),
          h("td", { class: "num" }, fmt(r.segm_map)),
          h("td", { class: "num" }, isNum(r.ms_per_image) ? `${fmt(r.ms_per_image, 1)} ms` : "–"))));
    }

    const form = $("#det-train-form");
    if (form) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        clearError();
        const config = { arch: form.arch.value };
        if (form.image_size.value) config.image_size = Number(form.image_size.value);
        if (form.max_minutes.value) config.max_minutes = Number(form.max_minutes.value);
        if (form.epochs.value) config.epochs = Number(form.epochs.value);
        const request = { dataset: form.dataset.value.trim(), config };
        if (form.annotations.value.trim()) request.annotations = form.annotations.value.trim();
        const button = $("#det-train-button");
        button.disabled = true;
        try {
          const job = await api(apiUrl("/detection/train"), {
            method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
          });
          window.location.href = runUrl(job.run_id, job.id);
        } catch (err) {
          showError(err, "cannot start the training");
        } finally {
          button.disabled = false;
        }
      });
    }
    loadRuns().catch(report("detection runs"));
  }

  if (body.dataset.run && $("#det-metrics")) runPageMain();
  else if ($("#det-runs-table")) runsPageMain();
})();
