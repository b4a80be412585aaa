/* vitrine web UI, a detection run's page (/detection/runs/{id}): state and live progress of its
 * training job, cancel, box and mask metrics, the per-class AP table, PR curves with Plotly served
 * by vitrine itself. Helpers come from common.js (window.vitrine).
 */
(() => {
  "use strict";

  const {
    $, enc, apiUrl, h, isNum, decimal, jobText, ApiError, isActive, showJobState, api, showError, report,
    fetchJob, cancelJob, leaderboardPage,
  } = window.vitrine;
  const body = document.body;
  const TYPES = { bbox: "Boxes", segm: "Masks" };
  // a detector's training job: one stage named, nothing more to say when done
  const DETECTION_JOB = { stages: { train: "Training" }, trained: () => [], cancelled: "Cancelled: the run keeps its last checkpoint" };

  // ============================================================================ run page
  function runPageMain() {
    const RUN = body.dataset.run;
    let jobId = body.dataset.job || "";
    let timer = null;
    let shownState = null;

    function showJob(job) {
      showJobState($("#det-job"), $("#det-job-state"), job);
      $("#det-job-text").textContent = jobText(job, DETECTION_JOB);
      const bar = $("#det-progress");
      if (job.state === "running" && job.total) bar.value = job.done / job.total;
      else if (job.state === "done") bar.value = 1;
      else bar.removeAttribute("value");
      $("#det-cancel").hidden = !isActive(job.state);
    }

    function metricsRows(summary) {
      return ["bbox", "segm"]
        .filter((t) => isNum(summary[`${t}_map50`]) || isNum(summary[`${t}_map`]))
        .map((t) =>
          h("tr", { dataset: { type: t } },
            h("th", { scope: "row" }, TYPES[t]),
            ...["map50", "map", "precision", "recall", "f1", "mean_iou"].map((k) =>
              h("td", { class: "num" }, decimal(summary[`${t}_${k}`])))));
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
          cells.push(h("td", { class: "num" }, decimal(r.ap50)), h("td", { class: "num" }, decimal(r.ap)));
        });
        cells.push(h("td", { class: "num" }, decimal(row.precision)), h("td", { class: "num" }, decimal(row.recall)),
          h("td", { class: "num" }, decimal(row.f1)));
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
      $("#det-run-meta").replaceChildren([
        `${r.kind || "detection"} run`, r.dataset ? `dataset ${r.dataset}` : "", r.model || "",
        cfg.image_size ? `image size ${cfg.image_size}` : "",
      ].filter(Boolean).join(" · "), ...(r.dataset
        ? [" · ", h("a", { id: "det-board-link", href: leaderboardPage(r.dataset) }, "its leaderboard")] : []));
      const rows = metricsRows(s);
      $("#det-metrics-body").replaceChildren(...rows);
      $("#det-metrics").setAttribute("aria-busy", "false");
      $("#det-no-metrics").hidden = rows.length > 0;
      $("#det-eval-meta").textContent = rows.length ? [
        s.evaluated_on ? `on the ${s.evaluated_on} split` : "",
        isNum(s.n_images) ? `${s.n_images} images` : "",
        isNum(s.ms_per_image) ? `inference ${decimal(s.ms_per_image, 1)} ms/image` : "",
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
        const job = await fetchJob(jobId);
        showJob(job);
        active = isActive(job.state);
      }
      const d = await loadRun();
      if (!jobId && d && isActive((d.record || {}).state)) active = true;
      if (active) timer = setTimeout(() => tick().catch(report("following the training")), 2000);
    }

    $("#det-cancel").addEventListener("click", async () => {
      if (!jobId) return;
      try {
        const job = await cancelJob(jobId);
        showJob(job);
      } catch (err) {
        showError(err, "cannot cancel");
      }
    });
    tick().catch(report(`loading run ${RUN}`));
    window.addEventListener("beforeunload", () => clearTimeout(timer));
  }

  if (body.dataset.run && $("#det-metrics")) runPageMain();
})();
