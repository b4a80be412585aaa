/* vitrine web UI, a detection run's page (/detection/runs/{id}): state and live progress of its
 * training job, cancel, box and mask metrics, the per-class AP table, PR curves with Plotly served
 * by vitrine itself, and its errors image by image (TP / FP / FN boxes drawn in SVG over each
 * image, re-queried as the IoU and score sliders move). Helpers come from common.js (window.vitrine).
 */
(() => {
  "use strict";

  const {
    $, enc, apiUrl, h, isNum, decimal, jobText, ApiError, isActive, showJobState, api, showError, report,
    fetchJob, cancelJob, leaderboardPage, plural,
  } = window.vitrine;
  const body = document.body;
  const TYPES = { bbox: "Boxes", segm: "Masks" };
  // a detector's training job: one stage named, nothing more to say when done
  const DETECTION_JOB = { stages: { train: "Training" }, trained: () => [], cancelled: "Cancelled: the run keeps its last checkpoint" };

  // ============================================================================ errors, image by image
  const SVG = "http://www.w3.org/2000/svg";
  const FP_KINDS = {
    duplicate: ["dup", "duplicate"],
    class: ["class", "class confusion"],
    localisation: ["loc", "poor localisation"],
    background: ["bg", "background"],
  };
  const PAGE_SIZE = 24;
  const GRID_LABELS = 8; // more errors than this on an image: its thumbnail shows the boxes without labels

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  const boxText = (bbox) => `[${bbox.map((v) => Math.round(v)).join(", ")}]`;

  /** The short label of a box (grid) or its long one (large view). */
  function boxLabel(b, long) {
    if (b.kind === "tp") return long ? `TP · ${b.class} ${decimal(b.score, 2)}` : `${b.class}`;
    if (b.kind === "fn") return long ? `FN · missed ${b.class}` : `FN ${b.class}`;
    const [short, name] = FP_KINDS[b.fp_kind] || [b.fp_kind, b.fp_kind];
    return long ? `FP · ${name} · ${b.class} ${decimal(b.score, 2)}` : `FP ${short}`;
  }

  /** The image with its boxes drawn over it in SVG: the frame has the image's aspect ratio, so the
   * SVG's viewBox (the image's pixels) and the image line up exactly at any size. */
  function drawnImage(url, im, long) {
    // the large view fits the window's height too, keeping the image's aspect ratio
    const fit = long ? `; max-width: calc(72vh * ${im.width / Math.max(1, im.height)})` : "";
    const frame = h("div", { class: "err-frame", style: `aspect-ratio: ${im.width} / ${im.height}${fit}` },
      h("img", { src: url, alt: im.file_name, loading: "lazy", decoding: "async" }));
    const svg = svgEl("svg", { viewBox: `0 0 ${im.width} ${im.height}`, preserveAspectRatio: "none", class: "err-boxes",
      "aria-hidden": "true" });
    const labels = h("div", { class: "err-labels", "aria-hidden": "true" });
    // misses under the predictions, true positives on top
    const order = { fn: 0, fp: 1, tp: 2 };
    [...im.boxes].sort((a, b) => order[a.kind] - order[b.kind]).forEach((b) => {
      const [x, y, w, hgt] = b.bbox;
      svg.append(svgEl("rect", { x, y, width: Math.max(w, 0.5), height: Math.max(hgt, 0.5), class: `box box-${b.kind}`,
        "vector-effect": "non-scaling-stroke", "data-kind": b.kind }));
      // the grid labels the errors only, and only where they are few enough to read (the large view labels all)
      if (!long && (b.kind === "tp" || im.errors > GRID_LABELS)) return;
      // a miss is labelled under its box: a prediction on the same spot keeps its label above
      const top = b.kind === "fn" ? y + hgt : y;
      labels.append(h("span", { class: `box-label label-${b.kind}`,
        style: `left: ${(100 * x) / im.width}%; top: ${(100 * top) / im.height}%` }, boxLabel(b, long)));
    });
    frame.append(svg, labels);
    return frame;
  }

  const MASK_RGBA = { tp: [31, 157, 85, 110], fp: [217, 45, 32, 110], fn: [232, 116, 12, 110] };

  /** The run lengths of a COCO compressed RLE string (pycocotools' rleFrString). */
  function rleCounts(s) {
    const counts = [];
    let p = 0;
    while (p < s.length) {
      let x = 0;
      let k = 0;
      let more = 1;
      while (more) {
        const c = s.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = c & 0x20;
        p += 1;
        k += 1;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }

  /** The boxes' masks painted on one canvas the size of the image (COCO RLEs are column-major,
   * runs of 0 then 1 alternating), laid under the boxes' SVG. */
  function maskCanvas(im, boxes) {
    const canvas = h("canvas", { class: "err-masks", width: im.width, height: im.height, "aria-hidden": "true" });
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(im.width, im.height);
    const px = img.data;
    const order = { fn: 0, fp: 1, tp: 2 };
    [...boxes].filter((b) => b.mask).sort((a, b) => order[a.kind] - order[b.kind]).forEach((b) => {
      const [hgt, wid] = b.mask.size;
      if (hgt !== im.height || wid !== im.width) return;
      const rgba = MASK_RGBA[b.kind];
      let i = 0;
      rleCounts(b.mask.counts).forEach((run, n) => {
        if (n % 2 === 1) {
          for (let j = i; j < i + run; j += 1) {
            const o = ((j % hgt) * wid + Math.floor(j / hgt)) * 4;
            px[o] = rgba[0]; px[o + 1] = rgba[1]; px[o + 2] = rgba[2]; px[o + 3] = rgba[3];
          }
        }
        i += run;
      });
    });
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  function errorsMain(RUN, iouTypes, classes, record) {
    const section = $("#det-errors");
    const grid = $("#det-errors-grid");
    const iou = $("#det-errors-iou");
    const score = $("#det-errors-score");
    const cls = $("#det-errors-class");
    const type = $("#det-errors-type");
    const more = $("#det-errors-more");
    const dialog = $("#det-error-view");
    let shown = [];
    let total = 0;
    let seq = 0;
    let timer = null;
    section.hidden = false;
    cls.replaceChildren(h("option", { value: "" }, "all classes"), ...classes.map((c) => h("option", { value: c }, c)));
    document.querySelectorAll(".det-errors-type").forEach((el) => { el.hidden = iouTypes.length < 2; });
    $("#det-errors-form").addEventListener("submit", (event) => event.preventDefault());

    const imageUrl = (id) => apiUrl(`/detection/runs/${enc(RUN)}/images/${enc(id)}`);
    const query = (offset, limit) => {
      const q = new URLSearchParams({ iou: iou.value, score: score.value, iou_type: type.value || "bbox",
        offset: String(offset), limit: String(limit) });
      if (cls.value) q.set("category", cls.value);
      return apiUrl(`/detection/runs/${enc(RUN)}/errors?${q}`);
    };

    function card(im) {
      const counts = [
        h("span", { class: "n-err" }, plural(im.errors, "error")),
        h("span", { class: "n-tp" }, `${im.tp} TP`),
        h("span", { class: "n-fp" }, `${im.fp} FP`),
        h("span", { class: "n-fn" }, `${im.fn} FN`),
      ];
      return h("li", { class: "err-card", dataset: { image: im.image_id, errors: im.errors } },
        h("button", { type: "button", class: "err-open", title: `${im.file_name}: open its boxes`,
          onclick: () => openImage(im) },
        drawnImage(imageUrl(im.image_id), im, false),
        h("span", { class: "err-caption" }, im.file_name),
        h("span", { class: "err-counts" }, ...counts)));
    }

    function showCounts(d) {
      const c = d.counts;
      const kinds = Object.entries(c.fp_kinds || {}).filter(([, n]) => n > 0)
        .map(([k, n]) => `${n} ${(FP_KINDS[k] || [k, k])[1]}`);
      $("#det-errors-counts").replaceChildren(
        h("strong", { class: "count-tp" }, `${c.tp} TP`), " · ",
        h("strong", { class: "count-fp" }, `${c.fp} FP`), kinds.length ? ` (${kinds.join(", ")})` : "", " · ",
        h("strong", { class: "count-fn" }, `${c.fn} FN`), " · ",
        `${c.images_with_errors} of ${plural(c.images, "image")} with errors`,
        d.split ? ` · ${d.split} split` : "",
        ...(d.notes || []).map((n) => h("span", { class: "note" }, ` · ${n}`)),
      );
    }

    function note(text, hint, action) {
      const el = $("#det-errors-note");
      el.hidden = !text;
      el.replaceChildren(...(text ? [text, hint ? h("span", { class: "hint" }, ` ${hint}`) : "", action || ""] : []));
    }

    // a trained run evaluated before runs kept their predictions: evaluated again in a job, then shown
    const trained = !record.imported && !record.submission;
    async function evaluateAgain(button) {
      button.disabled = true;
      button.textContent = "Evaluating…";
      let job = await api(apiUrl(`/detection/runs/${enc(RUN)}/evaluate`), { method: "POST" });
      while (isActive(job.state)) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        job = await fetchJob(job.id);
        if (job.total) button.textContent = `Evaluating… ${job.done}/${job.total}`;
      }
      if (job.state !== "done") {
        button.disabled = false;
        button.textContent = "Evaluate again";
        throw new ApiError((job.error && job.error.message) || `the evaluation ${job.state}`,
          job.error && job.error.hint);
      }
      $("#det-errors-form").hidden = false;
      await load(false);
    }
    const againButton = () => {
      const button = h("button", { type: "button", id: "det-errors-evaluate", class: "button small" }, "Evaluate again");
      button.addEventListener("click", () => evaluateAgain(button).catch(report("evaluating the run again")));
      return h("span", { class: "note-action" }, " ", button);
    };

    async function load(append) {
      const mine = ++seq;
      const offset = append ? shown.length : 0;
      const limit = append ? PAGE_SIZE : Math.max(PAGE_SIZE, shown.length);
      grid.setAttribute("aria-busy", "true");
      let d;
      try {
        d = await api(query(offset, limit));
      } catch (err) {
        if (mine !== seq) return;
        grid.setAttribute("aria-busy", "false");
        if ([403, 404, 409].includes(err.status)) {  // no predictions kept, a hidden split, a dataset gone
          grid.replaceChildren();
          $("#det-errors-counts").replaceChildren();
          more.hidden = true;
          note(err.message, err.hint, err.code === "no_predictions" && trained ? againButton() : null);
          $("#det-errors-form").hidden = true;
          return;
        }
        throw err;
      }
      if (mine !== seq) return; // a newer query was sent while this one ran
      note("");
      total = d.total;
      shown = append ? shown.concat(d.images) : d.images;
      showCounts(d);
      const cards = d.images.map(card);
      if (append) grid.append(...cards); else grid.replaceChildren(...cards);
      if (!shown.length) note("No image here: no box of this class at these thresholds.");
      more.hidden = shown.length >= total;
      more.textContent = `Show more (${total - shown.length} left)`;
      grid.setAttribute("aria-busy", "false");
    }

    async function showMasks(im) {
      // the masks of this one image: the same query, at its place in the list
      const index = shown.indexOf(im);
      const d = await api(`${query(index, 1)}&masks=true`);
      const found = (d.images || [])[0];
      const frame = $("#det-error-view-image .err-frame");
      if (!found || found.image_id !== im.image_id || !frame || !dialog.open) return;
      frame.insertBefore(maskCanvas(found, found.boxes), frame.querySelector("svg"));
    }

    function openImage(im) {
      $("#det-error-view-title").textContent = `${im.file_name} · ${plural(im.errors, "error")}`;
      $("#det-error-view-image").replaceChildren(drawnImage(imageUrl(im.image_id), im, true));
      if (type.value === "segm") showMasks(im).catch(report("loading the image's masks"));
      const order = { fp: 0, fn: 1, tp: 2 };
      $("#det-error-view-boxes").replaceChildren(...[...im.boxes].sort((a, b) => order[a.kind] - order[b.kind])
        .map((b) => h("tr", { class: `row-${b.kind}` },
          h("td", {}, b.kind === "fp" ? `FP · ${(FP_KINDS[b.fp_kind] || [0, b.fp_kind])[1]}` : b.kind.toUpperCase()),
          h("td", {}, b.class),
          h("td", { class: "num" }, isNum(b.score) ? decimal(b.score, 2) : "–"),
          h("td", { class: "num" }, isNum(b.iou) ? decimal(b.iou, 2) : "–"),
          h("td", {}, b.gt ? `${b.gt.class} ${boxText(b.gt.bbox)}` : b.kind === "fn" ? `itself ${boxText(b.bbox)}` : "–"))));
      if (typeof dialog.showModal === "function") dialog.showModal(); else dialog.setAttribute("open", "");
    }

    $("#det-error-view-close").addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });

    const requery = () => {
      $("#det-errors-iou-value").textContent = Number(iou.value).toFixed(2);
      $("#det-errors-score-value").textContent = Number(score.value).toFixed(2);
      clearTimeout(timer);
      timer = setTimeout(() => load(false).catch(report("loading the run's errors")), 120);
    };
    iou.addEventListener("input", requery);
    score.addEventListener("input", requery);
    cls.addEventListener("change", requery);
    type.addEventListener("change", requery);
    more.addEventListener("click", () => load(true).catch(report("loading more images")));
    return load(false);
  }

  // ============================================================================ run page
  function runPageMain() {
    const RUN = body.dataset.run;
    let jobId = body.dataset.job || "";
    let timer = null;
    let shownState = null;
    let errorsStarted = false;

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
        if (!errorsStarted) {
          errorsStarted = true;
          const first = (d.per_class || {})[d.iou_types[0]] || [];
          // the thresholds the run was evaluated at are where the sliders start
          const cfg0 = r.config || {};
          if (isNum(cfg0.iou_threshold)) $("#det-errors-iou").value = String(cfg0.iou_threshold);
          if (isNum(cfg0.score_threshold)) $("#det-errors-score").value = String(cfg0.score_threshold);
          $("#det-errors-iou-value").textContent = Number($("#det-errors-iou").value).toFixed(2);
          $("#det-errors-score-value").textContent = Number($("#det-errors-score").value).toFixed(2);
          errorsMain(RUN, d.iou_types, first.map((row) => row.class), r).catch(report("loading the run's errors"));
        }
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
