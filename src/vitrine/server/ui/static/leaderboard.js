/* vitrine web UI, the leaderboard of a dataset (/leaderboards/{dataset}): for each group of runs scored
 * on the same split (one split fingerprint), a speed-vs-accuracy chart with the Pareto front and a
 * sortable table; the runs without a fingerprint listed apart; a panel comparing 2 to 4 ticked runs
 * side by side (metrics, speed and cost, the options that differ, per-class numbers, the detectors'
 * PR curves in one chart, the classifiers' confusion matrices); and the dataset's sweeps: a form that
 * starts one (POST /api/v1/sweeps) and the list of those the caller may read, followed while they run,
 * the board reloaded when a trial finishes; and a form that compares embedding models (POST
 * /api/v1/datasets/{dataset}/embedding-comparisons), followed through its job, whose runs form an
 * "Embedding models" table (kNN@10 first, the other scores beside speed and bytes per vector).
 * Everything shown comes from GET /api/v1/leaderboards/{dataset}, the runs' detail routes and the
 * sweep routes, so a user sees only what the API lets them read. Helpers come from common.js.
 */
(() => {
  "use strict";

  const {
    $, DATASET, enc, apiUrl, h, isNum, plural, pct, formatBytes, formatDuration, formatWhen, stateBadge, runPage,
    detectionRunPage, COLORS, layout, plot, findConfusion, isActive, api, report, showError,
  } = window.vitrine;

  const MAX_COMPARE = 4;
  const METRIC_NAMES = {
    accuracy: "Accuracy", macro_f1: "Macro-F1", macro_precision: "Macro precision", macro_recall: "Macro recall",
    weighted_f1: "Weighted F1", weighted_precision: "Weighted precision", weighted_recall: "Weighted recall", bbox_map50: "Box mAP@.5", bbox_map: "Box mAP@.5:.95",
    bbox_map75: "Box mAP@.75", bbox_precision: "Box precision", bbox_recall: "Box recall", bbox_f1: "Box F1",
    bbox_mean_iou: "Box mean IoU", segm_map50: "Mask mAP@.5", segm_map: "Mask mAP@.5:.95", segm_map75: "Mask mAP@.75",
    segm_precision: "Mask precision", segm_recall: "Mask recall", segm_f1: "Mask F1", segm_mean_iou: "Mask mean IoU",
    knn10_accuracy: "kNN@10 accuracy", knn1_accuracy: "kNN@1 accuracy", probe_accuracy: "Probe accuracy",
    zero_shot_accuracy: "Zero-shot accuracy", map_at_k: "mAP@k", keyword_map_at_k: "Keyword mAP@k",
    text_query_ms: "ms/text query", bytes_per_vector: "Bytes/vector", dim: "Dimension",
  };
  const TASK_NAMES = { classify: "Classification", detect: "Detection", embedding: "Embedding models" };
  const PALETTE = ["#2c5fb8", "#e29a2d", "#2f9e5b", "#c2410c", "#7c3aed", "#0f766e", "#be185d", "#4d7c0f", "#64748b", "#a16207"];
  const SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon", "triangle-down", "pentagon"];
  // numbers where less is better: the first click on their column sorts lowest first
  const LOWER_FIRST = new Set(["rank", "latency_ms", "parameters", "gflops", "weights_bytes", "train_seconds", "text_query_ms", "bytes_per_vector"]);
  const TEXT_KEYS = new Set(["id", "arch", "size", "owner"]);

  const metricName = (key) => METRIC_NAMES[key] || key;
  const pageOf = (row) => (row.task === "detect" ? detectionRunPage(row.id) : runPage(row.id));
  const isRate = (key) => key === "accuracy" || /_accuracy$/.test(key); // a share, shown in %; the other scores as 0.000
  const formatMetric = (key, x) => (!isNum(x) ? "—" : isRate(key) ? pct(x) : x.toFixed(3));

  function formatMs(x) {
    if (!isNum(x)) return "—";
    return x < 1 ? x.toFixed(3) : x < 100 ? x.toFixed(1) : String(Math.round(x));
  }
  const formatRate = (x) => (isNum(x) ? (x < 10 ? x.toFixed(1) : String(Math.round(x))) : "—");
  function formatCount(n) {
    if (!isNum(n)) return "—";
    if (n >= 1e9) return `${(n / 1e9).toFixed(1)} G`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
    if (n >= 1e4) return `${(n / 1e3).toFixed(0)} k`;
    return String(n);
  }
  const formatGflops = (x) => (isNum(x) ? (x < 0.1 ? x.toFixed(3) : x.toFixed(2)) : "—");
  const configText = (v) => (v === undefined ? "—" : typeof v === "string" ? v : JSON.stringify(v));
  // text put in Plotly's hover labels, which read a few HTML tags: escape what comes from the API
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const label = (row) => [row.arch || row.model || "?", row.size].filter(Boolean).join(" · ");

  /** The config options whose values differ between ``rows`` (in first-seen order). */
  function differingKeys(rows) {
    const keys = [];
    for (const row of rows) for (const k of Object.keys(row.config || {})) if (!keys.includes(k)) keys.push(k);
    return keys.filter((k) => new Set(rows.map((r) => configText((r.config || {})[k]))).size > 1);
  }

  // ============================================================================ the chart
  function drawChart(el, group) {
    const rows = group.rows.filter((r) => isNum(r.latency_ms) && isNum(r.primary));
    const empty = el.nextElementSibling;
    if (!rows.length) {
      el.hidden = true;
      empty.hidden = false;
      return;
    }
    const differ = differingKeys(rows);
    const archs = [...new Set(rows.map((r) => r.arch || r.model || "?"))];
    const sizes = [...new Set(rows.map((r) => r.size || ""))];
    const traces = new Map();
    for (const row of rows) {
      const key = label(row);
      if (!traces.has(key)) {
        const arch = archs.indexOf(row.arch || row.model || "?");
        const size = sizes.indexOf(row.size || "");
        traces.set(key, {
          type: "scatter", mode: "markers", name: key, x: [], y: [], customdata: [], hovertext: [],
          hoverinfo: "text",
          marker: {
            size: 11, color: PALETTE[arch % PALETTE.length], symbol: SYMBOLS[size % SYMBOLS.length],
            line: { width: [], color: COLORS.text },
          },
        });
      }
      const t = traces.get(key);
      t.x.push(row.latency_ms);
      t.y.push(row.primary);
      t.customdata.push(row.id);
      t.marker.line.width.push(row.pareto ? 2 : 0);
      const config = row.config || {};
      const keys = [...differ, ...Object.keys(config).filter((k) => !differ.includes(k))].slice(0, 10);
      t.hovertext.push([
        `<b>${esc(row.id)}</b>${row.pareto ? " (Pareto front)" : ""}`,
        esc(label(row)),
        `${esc(metricName(group.primary_metric))}: ${formatMetric(group.primary_metric, row.primary)}`,
        `${formatMs(row.latency_ms)} ms/image at batch 1`,
        ...keys.map((k) => `${differ.includes(k) ? "<b>" : ""}${esc(k)}: ${esc(configText(config[k]).slice(0, 60))}${differ.includes(k) ? "</b>" : ""}`),
      ].join("<br>"));
    }
    const front = group.rows.filter((r) => r.pareto && isNum(r.latency_ms) && isNum(r.primary))
      .sort((a, b) => a.latency_ms - b.latency_ms || b.primary - a.primary);
    const data = [];
    if (front.length > 1) {
      data.push({
        type: "scatter", mode: "lines", name: "Pareto front", x: front.map((r) => r.latency_ms),
        y: front.map((r) => r.primary), line: { shape: "hv", color: COLORS.muted, dash: "dot", width: 1.5 },
        hoverinfo: "skip",
      });
    }
    data.push(...traces.values());
    const xs = rows.map((r) => r.latency_ms).filter((x) => x > 0);
    const unit = rows.every((r) => r.primary >= 0 && r.primary <= 1);
    const wide = xs.length > 1 && Math.max(...xs) / Math.min(...xs) > 20;
    el.hidden = false;
    empty.hidden = true;
    plot(el, data, layout({
      height: 340,
      margin: { l: 60, r: 16, t: 10, b: 50 },
      showlegend: true,
      legend: { orientation: "h", y: -0.22 },
      hovermode: "closest",
      xaxis: {
        title: { text: `ms/image at batch 1${wide ? " (log scale)" : ""}` }, type: wide ? "log" : "linear",
        rangemode: wide ? undefined : "nonnegative",
        range: new Set(xs).size === 1 ? [0, 2 * xs[0]] : undefined, // one speed: centred, from 0
      },
      yaxis: {
        title: { text: metricName(group.primary_metric) }, tickformat: isRate(group.primary_metric) ? ".0%" : undefined,
        range: unit ? [-0.05, 1.05] : undefined, // scores between 0 and 1 keep that scale, even for one run
      },
    }));
    if (!el.dataset.wired) {
      el.dataset.wired = "1";
      el.on("plotly_click", (event) => {
        const point = event.points && event.points[0];
        const id = point && point.customdata;
        const row = id && group.rows.find((r) => r.id === id);
        if (row) window.location.href = pageOf(row);
      });
    }
  }

  // ============================================================================ the tables
  const COLUMNS = [
    { key: "rank", title: "#", num: true, cell: (r) => (isNum(r.rank) ? String(r.rank) : "—") },
    { key: "id", title: "Run" },
    { key: "arch", title: "Architecture", cell: (r) => r.arch || r.model || "—" },
    { key: "size", title: "Size", cell: (r) => r.size || "—" },
    { key: "primary", title: null, num: true },
    { key: "latency_ms", title: "ms/image", num: true, cell: (r) => formatMs(r.latency_ms), help: "latency at batch 1" },
    { key: "images_per_second", title: "Images/s", num: true, cell: (r) => formatRate(r.images_per_second) },
    { key: "parameters", title: "Parameters", num: true, cell: (r) => formatCount(r.parameters) },
    { key: "gflops", title: "GFLOPs", num: true, cell: (r) => formatGflops(r.gflops) },
    { key: "weights_bytes", title: "Weights", num: true, cell: (r) => (isNum(r.weights_bytes) ? formatBytes(r.weights_bytes) : "—") },
    { key: "train_seconds", title: "Training", num: true, cell: (r) => (isNum(r.train_seconds) ? formatDuration(r.train_seconds) : "—") },
    { key: "owner", title: "Owner", cell: (r) => r.owner || "—" },
  ];

  // an embedding board: the scores of compare-embeddings beside speed and size (the primary, kNN@10, comes from the row)
  const metricOf = (key) => (r) => (r.metrics || {})[key];
  const EMBEDDING_COLUMNS = [
    COLUMNS[0], COLUMNS[1],
    {
      key: "arch", title: "Model", class: "model-cell",
      cell: (r) => h("span", {}, r.arch || r.model || "—", r.random_weights ? h("span", {
        class: "badge badge-random", title: "Randomly initialised: its speed is the architecture's, its scores mean nothing",
      }, "random weights: speed only") : null),
    },
    { key: "size", title: "Space", cell: (r) => r.size || "—" },
    COLUMNS[4],
    ...["knn1_accuracy", "probe_accuracy", "zero_shot_accuracy", "map_at_k"].map((key) => ({
      key, title: metricName(key), num: true, value: metricOf(key), cell: (r) => formatMetric(key, metricOf(key)(r)),
    })),
    COLUMNS[5], COLUMNS[6],
    { key: "text_query_ms", title: "ms/text", num: true, value: metricOf("text_query_ms"), cell: (r) => formatMs(metricOf("text_query_ms")(r)), help: "ms per text query at batch 1" },
    { key: "dim", title: "Dim", num: true, value: metricOf("dim"), cell: (r) => (isNum(metricOf("dim")(r)) ? String(metricOf("dim")(r)) : "—") },
    { key: "bytes_per_vector", title: "Bytes/vector", num: true, value: metricOf("bytes_per_vector"), cell: (r) => formatCount(metricOf("bytes_per_vector")(r)), help: "in the index vitrine would build for these images" },
    COLUMNS[11],
  ];
  const columnsOf = (group) => (group.task === "embedding" ? EMBEDDING_COLUMNS : COLUMNS);

  function compareRows(sort, columns = COLUMNS) {
    const col = columns.find((c) => c.key === sort.key);
    const valueOf = (row) => (col && col.value ? col.value(row) : row[sort.key]);
    return (a, b) => {
      const x = valueOf(a); const y = valueOf(b);
      const nx = x === null || x === undefined || x === ""; const ny = y === null || y === undefined || y === "";
      if (nx || ny) return nx && ny ? 0 : nx ? 1 : -1; // missing values last, whatever the direction
      const c = TEXT_KEYS.has(sort.key) ? String(x).localeCompare(String(y)) : x - y;
      return sort.desc ? -c : c;
    };
  }

  function groupCard(group, index, selection) {
    const primaryTitle = metricName(group.primary_metric);
    const columns = columnsOf(group);
    let sort = { key: "rank", desc: false };
    const body = h("tbody");
    const titleId = `group-${index}-title`;

    function runCell(row) {
      return h("td", { class: "run-id" },
        h("a", { href: pageOf(row) }, row.id),
        row.pareto ? h("span", {
          class: "badge badge-pareto", title: "On the Pareto front: no other run here is both faster and more accurate",
          "aria-label": "on the Pareto front",
        }, "Pareto") : null,

        row.state && row.state !== "done" ? stateBadge(row.state) : null);
    }

    function render() {
      const rows = [...group.rows].sort(compareRows(sort, columns));
      body.replaceChildren(...rows.map((row) => {
        const box = h("input", {
          type: "checkbox", class: "compare-pick", "aria-label": `compare ${row.id}`, dataset: { run: row.id },
          onchange: (event) => selection.toggle(row, event.currentTarget.checked),
        });
        box.checked = selection.has(row.id);
        return h("tr", { dataset: { run: row.id, pareto: row.pareto ? "true" : "false" }, class: row.pareto ? "pareto-row" : "" },
          h("td", { class: "pick" }, box),
          ...columns.map((c) => {
            if (c.key === "id") return runCell(row);
            if (c.key === "primary") return h("td", { class: "num primary-cell" }, formatMetric(group.primary_metric, row.primary));
            return h("td", { class: [c.num ? "num" : "", c.class || ""].join(" ").trim(), dataset: { col: c.key } }, c.cell(row));
          }));
      }));
      for (const b of table.querySelectorAll(".sort")) {
        const th = b.closest("th");
        if (b.dataset.sort === sort.key) th.setAttribute("aria-sort", sort.desc ? "descending" : "ascending");
        else th.removeAttribute("aria-sort");
      }
      selection.refresh();
    }

    const head = h("tr", {},
      h("th", { scope: "col", class: "pick" }, h("span", { class: "visually-hidden" }, "Compare")),
      ...columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : "", title: c.help || null },
        h("button", {
          type: "button", class: "sort", dataset: { sort: c.key },
          onclick: () => {
            sort = sort.key === c.key ? { key: c.key, desc: !sort.desc }
              : { key: c.key, desc: !(LOWER_FIRST.has(c.key) || TEXT_KEYS.has(c.key)) };
            render();
          },
        }, c.title || primaryTitle))));
    const table = h("table", { class: "data-table board-table", "aria-labelledby": titleId }, h("thead", {}, head), body);
    const front = group.rows.filter((r) => r.pareto).length;
    const card = h("section", { class: "table-card board-group", "aria-labelledby": titleId, dataset: { fingerprint: group.fingerprint || "", split: group.split || "" } },
      h("h2", { id: titleId }, `${TASK_NAMES[group.task] || group.task} on the ${group.split || "unnamed"} split`),
      h("p", { class: "muted group-meta" },
        `${group.runs} run${group.runs === 1 ? "" : "s"} ranked by ${primaryTitle}`,
        ` · ${front} on the Pareto front of ms/image against ${primaryTitle}`,
        " · split fingerprint ", h("code", {}, group.fingerprint || "")),
      h("div", { class: "chart board-chart", role: "img", "aria-label": `${primaryTitle} against ms/image at batch 1, one point per run; the Pareto front as a step line` }),
      h("p", { class: "muted chart-empty-note", hidden: true }, "No run of this group has both a speed and a score to plot."),
      h("div", { class: "table-wide" }, table));
    render();
    return { card, render, chart: card.querySelector(".board-chart") };
  }

  function unrankedItem(row) {
    const why = row.state && row.state !== "done"
      ? `${row.state}: not evaluated yet`
      : "no split fingerprint (recorded before fingerprints existed, or evaluated without one)";
    return h("li", { dataset: { run: row.id } },
      h("a", { href: pageOf(row) }, row.id), " ",
      h("span", { class: "muted" }, `${label(row)} · ${why}`));
  }

  // ============================================================================ compare
  function comparePanel(selection) {
    const cache = new Map(); // run id -> its detail from the API (a promise)

    function detailOf(row) {
      if (!cache.has(row.id)) {
        const url = row.task === "detect" ? apiUrl(`/detection/runs/${enc(row.id)}`) : apiUrl(`/runs/${enc(row.id)}`);
        const promise = api(url);
        promise.catch(() => cache.delete(row.id)); // asked again next time
        cache.set(row.id, promise);
      }
      return cache.get(row.id);
    }

    /** {class: score}: box AP@.5 for detectors, F1 for classifiers. */
    function perClass(row, detail) {
      if (!detail) return new Map();
      if (row.task === "detect") {
        const rows = (detail.per_class || {}).bbox || [];
        return new Map(rows.map((r) => [String(r.class), r.ap50]));
      }
      let rows = detail.per_class;
      if (rows && !Array.isArray(rows) && typeof rows === "object") {
        rows = Object.entries(rows).filter(([, v]) => v && typeof v === "object").map(([k, v]) => ({ class: k, ...v }));
      }
      return new Map((Array.isArray(rows) ? rows : []).map((r) => [String(r.class), r.f1]));
    }

    // ------------------------------------------------------------ PR curves (detectors), one chart
    const prCurves = (detail) => ((detail && detail.pr_curves) || {}).bbox || [];
    const meanOf = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

    /** One run's curve for ``pick`` (a class name, or "" for the mean over its classes): {recall,
     * precision, ap} or null. COCO's curves share their 101 recall points, so the mean is taken point
     * by point, and the mean of the precisions is the AP (mAP@.5 for the mean curve). */
    function curveOf(curves, pick) {
      if (!curves.length) return null;
      if (pick) {
        const c = curves.find((x) => String(x.class) === pick);
        return c ? { recall: c.recall, precision: c.precision, ap: meanOf(c.precision) } : null;
      }
      const recall = curves[0].recall;
      const precision = recall.map((_, i) => meanOf(curves.map((c) => c.precision[i] || 0)));
      return { recall, precision, ap: meanOf(precision) };
    }

    function drawCurves(rows, details) {
      const box = $("#compare-pr");
      const runs = rows.map((row, i) => ({ row, detail: details[i], color: PALETTE[i % PALETTE.length] }))
        .filter((x) => x.row.task === "detect");
      box.hidden = !runs.length;
      if (!runs.length) return;
      const select = $("#compare-pr-class");
      const classes = [];
      for (const r of runs) for (const c of prCurves(r.detail)) if (!classes.includes(String(c.class))) classes.push(String(c.class));
      const previous = select.value;
      select.replaceChildren(h("option", { value: "" }, "All classes (mean)"), ...classes.map((c) => h("option", { value: c }, c)));
      select.value = classes.includes(previous) ? previous : "";
      const pick = select.value;
      $("#compare-pr-title").textContent = `Precision-recall at IoU 0.5 (boxes): ${pick ? `class ${pick}` : "mean over the classes"}`;
      const data = [];
      const missing = [];
      for (const r of runs) {
        const curve = curveOf(prCurves(r.detail), pick);
        if (!curve) { missing.push(r.row.id); continue; }
        data.push({
          type: "scatter", mode: "lines", name: `${r.row.id} (AP ${curve.ap.toFixed(3)})`, x: curve.recall, y: curve.precision,
          line: { color: r.color, shape: "hv", width: 2 }, customdata: [r.row.id],
          hovertemplate: "%{fullData.name}<br>recall %{x:.2f}, precision %{y:.3f}<extra></extra>",
        });
      }
      const note = $("#compare-pr-missing");
      note.hidden = !missing.length;
      note.textContent = missing.length
        ? `No ${pick ? `curve for ${pick}` : "PR curves"} from ${missing.join(", ")}${pick ? "" : " (not evaluated yet, or no box evaluation)"}.` : "";
      const el = $("#compare-pr-chart");
      el.hidden = !data.length;
      if (!data.length) return;
      plot(el, data, layout({
        height: 340, margin: { l: 60, r: 16, t: 10, b: 50 }, showlegend: true, legend: { orientation: "h", y: -0.2 },
        hovermode: "closest",
        xaxis: { title: { text: "recall" }, range: [0, 1.01] },
        yaxis: { title: { text: "precision" }, range: [0, 1.05] },
      }));
    }

    // ------------------------------------------------------------ confusion matrices (classifiers), side by side
    function drawConfusions(rows, details) {
      const box = $("#compare-confusion");
      const runs = rows.map((row, i) => ({ row, cm: findConfusion(details[i]) })).filter((x) => x.row.task !== "detect");
      box.hidden = !runs.length;
      if (!runs.length) return;
      const shown = runs.filter((r) => r.cm);
      const missing = runs.filter((r) => !r.cm).map((r) => r.row.id);
      const note = $("#compare-confusion-missing");
      note.hidden = !missing.length;
      note.textContent = missing.length ? `No confusion matrix from ${missing.join(", ")} (not evaluated yet).` : "";
      const grid = $("#compare-confusion-grid");
      const items = shown.map((r) => {
        const chart = h("div", {
          class: "chart compare-confusion-chart", role: "img", dataset: { run: r.row.id },
          "aria-label": `confusion matrix of ${r.row.id}: true class by row, predicted by column, colour the share of the row`,
        });
        return { r, chart, node: h("figure", { class: "compare-confusion-item" }, h("figcaption", {}, r.row.id, r.cm.split ? h("span", { class: "muted" }, ` · ${r.cm.split} split`) : null), chart) };
      });
      grid.replaceChildren(...items.map((x) => x.node));
      for (const { r, chart } of items) {
        const { labels, matrix } = r.cm;
        const n = labels.length;
        const sums = matrix.map((row) => row.reduce((a, b) => a + b, 0));
        const z = matrix.map((row, i) => row.map((v) => (sums[i] ? v / sums[i] : 0)));
        plot(chart, [{
          type: "heatmap", x: labels, y: labels, z, customdata: matrix, zmin: 0, zmax: 1, showscale: false,
          colorscale: [[0, "#f4f6fb"], [0.5, "#7d9bd6"], [1, COLORS.accent]], xgap: 1, ygap: 1,
          hovertemplate: "true %{y}<br>predicted %{x}<br>%{customdata} images (%{z:.0%} of the row)<extra></extra>",
        }], layout({
          height: Math.min(420, Math.max(240, 110 + n * 28)),
          margin: { l: 70, r: 8, t: 6, b: 70 },
          xaxis: { title: { text: "predicted" }, type: "category", tickangle: n > 6 ? -40 : 0, showgrid: false },
          yaxis: { title: { text: "true" }, type: "category", autorange: "reversed", showgrid: false },
          annotations: n <= 12 ? matrix.flatMap((row, i) => row.map((v, j) => ({
            x: labels[j], y: labels[i], text: String(v), showarrow: false,
            font: { color: z[i][j] > 0.55 ? "#ffffff" : COLORS.text, size: 11 },
          }))) : [],
        }));
      }
    }

    function headRow(tr, rows, first, { text = false } = {}) {
      tr.replaceChildren(h("th", { scope: "col" }, first), ...rows.map((r) => h("th", { scope: "col", class: text ? "" : "num" }, r.id)));
    }

    function line(name, rows, values, { best = null, text = (v) => v } = {}) {
      const nums = values.filter(isNum);
      let top = null;
      if (best && nums.length > 1 && new Set(nums).size > 1) top = best === "min" ? Math.min(...nums) : Math.max(...nums);
      return h("tr", {}, h("th", { scope: "row" }, name),
        ...values.map((v) => h("td", { class: `num${top !== null && v === top ? " best" : ""}`, title: top !== null && v === top ? "best of these runs" : null }, text(v))));
    }

    async function render() {
      const rows = selection.rows();
      const panel = $("#compare");
      panel.hidden = rows.length < 2;
      if (rows.length < 2) return;
      const splits = new Set(rows.map((r) => r.fingerprint));
      $("#compare-hint").textContent = splits.size > 1
        ? "These runs were scored on different splits: their numbers are not comparable."
        : `${rows.length} runs scored on the same split. Best values in bold; options that differ highlighted.`;
      headRow($("#compare-head-row"), rows, "");
      const metricKeys = [];
      for (const r of rows) for (const k of Object.keys(r.metrics || {})) if (!metricKeys.includes(k)) metricKeys.push(k);
      const lower = (k) => (LOWER_FIRST.has(k) ? "min" : "max");
      $("#compare-body").replaceChildren(
        line("Architecture", rows, rows.map(label)),
        line("Split", rows, rows.map((r) => r.split || "—")),
        ...metricKeys.map((k) => line(metricName(k), rows, rows.map((r) => (r.metrics || {})[k]), { best: "max", text: (v) => formatMetric(k, v) })),
        line("ms/image (batch 1)", rows, rows.map((r) => r.latency_ms), { best: lower("latency_ms"), text: formatMs }),
        line("Images/s", rows, rows.map((r) => r.images_per_second), { best: "max", text: formatRate }),
        line("Device", rows, rows.map((r) => ((r.speed || {}).device) || "—")),
        line("Parameters", rows, rows.map((r) => r.parameters), { best: "min", text: formatCount }),
        line("GFLOPs", rows, rows.map((r) => r.gflops), { best: "min", text: formatGflops }),
        line("Weights", rows, rows.map((r) => r.weights_bytes), { best: "min", text: (v) => (isNum(v) ? formatBytes(v) : "—") }),
        line("Training", rows, rows.map((r) => r.train_seconds), { best: "min", text: (v) => (isNum(v) ? formatDuration(v) : "—") }),
        line("Owner", rows, rows.map((r) => r.owner || "—")));
      // the configuration: only the options that differ, highlighted
      const differ = differingKeys(rows);
      headRow($("#compare-config-head"), rows, "Option", { text: true });
      $("#compare-config-body").replaceChildren(...differ.map((k) => h("tr", { dataset: { option: k } },
        h("th", { scope: "row" }, k),
        ...rows.map((r) => h("td", { class: "diff" }, h("mark", {}, configText((r.config || {})[k])))))));
      $("#compare-config").hidden = !differ.length;
      $("#compare-config-same").hidden = differ.length > 0;
      // per class: F1 for classifiers, box AP@.5 for detectors
      const details = await Promise.all(rows.map((r) => detailOf(r).catch(() => null)));
      if (selection.rows().map((r) => r.id).join() !== rows.map((r) => r.id).join()) return; // changed meanwhile
      const tables = rows.map((r, i) => perClass(r, details[i]));
      const classes = [];
      for (const t of tables) for (const k of t.keys()) if (!classes.includes(k)) classes.push(k);
      const what = rows.every((r) => r.task === "detect") ? "box AP@.5" : rows.every((r) => r.task !== "detect") ? "F1" : "F1 or box AP@.5";
      $("#compare-classes-title").textContent = `Per class (${what})`;
      headRow($("#compare-classes-head"), rows, "Class");
      $("#compare-classes-body").replaceChildren(...classes.map((c) =>
        line(c, rows, tables.map((t) => t.get(c)), { best: "max", text: (v) => (isNum(v) ? v.toFixed(3) : "—") })));
      $("#compare-classes").hidden = !classes.length;
      $("#compare-classes-none").hidden = classes.length > 0;
      drawCurves(rows, details);
      drawConfusions(rows, details);
    }
    $("#compare-pr-class").addEventListener("change", () => render().catch(report("compare")));
    return { render, forget: () => cache.clear() };
  }

  function makeSelection() {
    const picked = new Map(); // id -> row, in the order ticked
    let onChange = () => {};
    const selection = {
      has: (id) => picked.has(id),
      rows: () => [...picked.values()],
      toggle(row, on) {
        if (on && picked.size < MAX_COMPARE) picked.set(row.id, row);
        else picked.delete(row.id);
        selection.refresh();
        onChange();
      },
      clear() { picked.clear(); selection.refresh(); onChange(); },
      /** After the board reloads: the ticked runs as the board has them now (gone ones dropped). */
      sync(rows) {
        const byId = new Map(rows.map((r) => [r.id, r]));
        for (const id of [...picked.keys()]) {
          if (byId.has(id)) picked.set(id, byId.get(id));
          else picked.delete(id);
        }
        selection.refresh();
        onChange();
      },
      refresh() {
        for (const box of document.querySelectorAll(".compare-pick")) {
          box.checked = picked.has(box.dataset.run);
          box.disabled = !box.checked && picked.size >= MAX_COMPARE;
          box.title = box.disabled ? `at most ${MAX_COMPARE} runs side by side` : "";
        }
        const n = picked.size;
        const status = $("#compare-status");
        status.hidden = n === 0;
        status.textContent = n === 1 ? "1 run ticked: tick another to compare them side by side."
          : `${n} runs ticked: compared below${n >= MAX_COMPARE ? ` (at most ${MAX_COMPARE})` : ""}.`;
      },
      set onChange(fn) { onChange = fn; },
    };
    return selection;
  }

  // ============================================================================ sweeps: the form
  const BOARD_TASK = document.body.dataset.boardTask || "";
  const FINISHED_TRIALS = new Set(["done", "stopped", "failed"]);
  const MAX_TRIALS = 1000; // the API's limit (experiments/space.py)
  const POLL_MS = 2000;

  const valueText = (v) => (v === null || v === undefined ? "none" : Array.isArray(v) ? v.join(" ") : String(v));

  /** The "Compare embedding models" form (absent for a caller who may not use the dataset): starts a
   * compare-embeddings job, follows it, and reloads the board when it has recorded its runs. */
  function embedForm(onDone) {
    const form = $("#embed-form");
    if (!form) return null;
    const status = $("#embed-status");
    const errorBox = $("#embed-error");
    function showFormError(err) {
      $(".embed-error-message", errorBox).textContent = (err && err.message) || String(err);
      const hint = $(".embed-error-hint", errorBox);
      hint.textContent = err && err.hint ? err.hint : "";
      hint.hidden = !(err && err.hint);
      errorBox.hidden = false;
    }
    async function follow(jobId) {
      for (;;) {
        const job = await api(apiUrl(`/jobs/${enc(jobId)}`));
        if (job.state === "done") {
          const n = ((job.result || {}).models || []).length;
          status.textContent = `Done: ${plural(n, "model")} scored on ${plural((job.result || {}).images || 0, "image")}; the board below has their runs.`;
          onDone();
          return;
        }
        if (job.state === "failed" || job.state === "cancelled") {
          status.textContent = "";
          showFormError({ message: `The comparison ${job.state}`, hint: job.error || null });
          return;
        }
        status.textContent = job.message || (job.stage ? `${job.stage}…` : "Queued…");
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      errorBox.hidden = true;
      const models = form.models.value.split(",").map((m) => m.trim()).filter(Boolean);
      const body = { models, k: Number(form.k.value) || 10 };
      if (form.limit.value) body.limit = Number(form.limit.value);
      const button = $("#embed-submit");
      button.disabled = true;
      status.textContent = "Starting…";
      try {
        const started = await api(apiUrl(`/datasets/${enc(DATASET)}/embedding-comparisons`), {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        await follow(started.job.id);
      } catch (err) {
        status.textContent = "";
        showFormError(err);
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  /** The "Start a sweep" form (absent for a caller who may not train on the dataset). */
  function sweepForm(onStarted) {
    const form = $("#sweep-form");
    if (!form) return null;
    let options = null; // {classify: [...], detect: [...]}, from GET /api/v1/sweep-options
    const rowsBox = $("#sweep-rows");
    const task = () => form.task.value;
    const known = () => (options && options[task()]) || [];
    const optionOf = (name) => known().find((o) => o.name === name);

    function hintOf(name) {
      const o = optionOf(name);
      if (!o) return "";
      const bits = [`${o.type}${o.optional ? " or none" : ""}`, `default ${valueText(o.default)}`];
      if (o.choices) bits.push(`one of ${o.choices.join(", ")}`);
      return bits.join(" · ");
    }

    function fillRow(row) {
      const name = row.querySelector(".sweep-option").value;
      const o = optionOf(name);
      const input = row.querySelector(".sweep-values");
      input.placeholder = o && o.choices ? `e.g. ${o.choices.slice(0, 3).join(", ")}`
        : o && o.type === "bool" ? "e.g. true, false" : `e.g. ${valueText(o ? o.default : "")}`;
      row.querySelector(".sweep-hint").textContent = hintOf(name);
    }

    function optionSelect(current) {
      const select = h("select", { class: "sweep-option", "aria-label": "option" },
        ...known().map((o) => h("option", { value: o.name }, o.name)));
      if (optionOf(current)) select.value = current;
      return select;
    }

    function addRow(name = "", values = "") {
      const select = optionSelect(name);
      const input = h("input", {
        class: "sweep-values", "aria-label": "values, separated by commas", maxlength: 2000, value: values,
        oninput: update,
      });
      const row = h("div", { class: "sweep-row" },
        select, input,
        h("button", {
          type: "button", class: "button small sweep-remove", "aria-label": "remove this option",
          onclick: () => { row.remove(); update(); },
        }, "Remove"),
        h("p", { class: "muted sweep-hint" }));
      select.addEventListener("change", () => { fillRow(row); update(); });
      rowsBox.append(row);
      fillRow(row);
      update();
      return row;
    }

    /** The grid (options with several values), the base (one value) and the number of trials. */
    function space() {
      const grid = {};
      const base = {};
      let trials = 1;
      let problem = null;
      for (const row of rowsBox.querySelectorAll(".sweep-row")) {
        const name = row.querySelector(".sweep-option").value;
        const values = [...new Set(row.querySelector(".sweep-values").value.split(",").map((v) => v.trim()).filter(Boolean))];
        if (!name || !values.length) continue;
        if (name in grid || name in base) problem = `option ${name} is given twice: list its values once`;
        if (values.length === 1) base[name] = values[0];
        else { grid[name] = values; trials *= values.length; }
      }
      if (!problem && trials > MAX_TRIALS) problem = `${trials} trials is more than ${MAX_TRIALS}: narrow the grid`;
      return { grid, base, trials, problem };
    }

    function update() {
      const { grid, trials, problem } = space();
      const count = $("#sweep-count");
      count.classList.toggle("text-warn", Boolean(problem));
      count.dataset.trials = String(trials);
      count.textContent = problem || (Object.keys(grid).length
        ? `${plural(trials, "trial")}: ${Object.entries(grid).map(([k, v]) => `${v.length} ${k}`).join(" × ")}`
        : "1 trial: give an option two values or more to compare configurations");
      $("#sweep-submit").disabled = Boolean(problem);
    }

    function setTask(value) {
      form.task.value = value;
      const detect = value === "detect";
      for (const el of form.querySelectorAll(".detect-only")) el.hidden = !detect;
      for (const el of form.querySelectorAll(".classify-only")) el.hidden = detect;
      for (const row of rowsBox.querySelectorAll(".sweep-row")) { // the same option names where the trainer has them
        const old = row.querySelector(".sweep-option");
        old.replaceWith(optionSelect(old.value));
        row.querySelector(".sweep-option").addEventListener("change", () => { fillRow(row); update(); });
        fillRow(row);
      }
      update();
    }

    function showProblem(err) {
      const box = $("#sweep-error");
      $(".sweep-error-message", box).textContent = (err && err.message) || String(err);
      const hint = $(".sweep-error-hint", box);
      hint.textContent = err && err.hint ? `Hint: ${err.hint}` : "";
      hint.hidden = !(err && err.hint);
      box.hidden = false;
    }

    form.task.addEventListener("change", () => setTask(task()));
    $("#sweep-add-row").addEventListener("click", () => addRow().querySelector(".sweep-values").focus());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      $("#sweep-error").hidden = true;
      const { grid, base, problem } = space();
      if (problem) { showProblem({ message: problem }); return; }
      const body = { task: task(), dataset: task() === "detect" ? form.dataset.value.trim() : DATASET, grid, base };
      if (task() === "detect" && form.annotations.value.trim()) body.annotations = form.annotations.value.trim();
      if (form.trial_minutes.value) body.trial_minutes = Number(form.trial_minutes.value);
      if (form.cpus_per_trial.value) body.cpus_per_trial = Number(form.cpus_per_trial.value);
      body.early_stopping = form.early_stopping.checked;
      const button = $("#sweep-submit");
      button.disabled = true;
      try {
        const started = await api(apiUrl("/sweeps"), {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        $("#sweep-started").textContent = `Sweep ${started.sweep_id} started: ${plural(started.trials, "trial")}.`;
        onStarted(started);
      } catch (err) {
        showProblem(err);
      } finally {
        update();
      }
    });

    return {
      async start() {
        options = await api(apiUrl("/sweep-options"));
        setTask(BOARD_TASK || "classify");
        addRow("image_size");
      },
      /** The board's task, once the board says it (a board named by a file has no folder to tell). */
      guessTask(value) { if (!BOARD_TASK && value && value !== task()) setTask(value); },
    };
  }

  // ============================================================================ sweeps: the list
  /** The sweeps of this dataset the caller may read, each with its trials; followed (polled) while
   * one runs. ``onTrialFinished`` is called when a trial has ended since the last look. */
  function sweepList(onTrialFinished) {
    const list = $("#sweep-list");
    const seen = new Map(); // sweep id -> its detail as last shown
    const open = new Set(); // sweeps whose trials are unfolded
    let timer = null;
    const running = (d) => d.state === "created" || d.state === "running" || Boolean(d.job && isActive(d.job.state));
    const finished = (d) => d.trials.filter((t) => FINISHED_TRIALS.has(t.state)).length;

    function trialRow(sweep, t) {
      const params = Object.entries(t.params || {}).map(([k, v]) => `${k}=${configText(v)}`).join(" · ") || "—";
      const epoch = isNum(t.epoch) ? `${t.epoch}${isNum(t.epochs) ? `/${t.epochs}` : ""}` : "—";
      const page = sweep.task === "detect" ? detectionRunPage(t.run_id) : runPage(t.run_id);
      return h("tr", { dataset: { trial: String(t.index), state: t.state } },
        h("td", { class: "num" }, String(t.index)),
        h("td", {}, stateBadge(t.state), t.error ? h("span", { class: "muted small trial-error", title: t.error }, ` ${t.error}`) : null),
        h("td", { class: "trial-params" }, params),
        h("td", { class: "num" }, epoch),
        h("td", { class: "num trial-metric" }, formatMetric(sweep.primary, t.metric)),
        h("td", { class: "run-id" }, t.state === "pending" ? h("span", { class: "muted" }, t.run_id) : h("a", { href: page }, t.run_id)));
    }

    function item(d) {
      const done = finished(d);
      const facts = [`${done}/${d.trials.length} trials finished`];
      if (d.best) facts.push(`best ${metricName(d.primary)} ${formatMetric(d.primary, d.best.metric)} (trial ${d.best.index})`);
      if (d.owner) facts.push(`by ${d.owner}`);
      if (d.created_at) facts.push(formatWhen(d.created_at));
      const cancel = running(d) ? h("button", {
        type: "button", class: "button small sweep-cancel", dataset: { sweep: d.id },
        onclick: async (event) => {
          event.currentTarget.disabled = true;
          try {
            await api(apiUrl(`/sweeps/${enc(d.id)}/cancel`), { method: "POST" });
          } catch (err) {
            showError(err, `cannot cancel sweep ${d.id}`);
          }
          load().catch(report("sweeps"));
        },
      }, "Cancel") : null;
      const details = h("details", { class: "sweep-trials" },
        h("summary", {}, `${plural(d.trials.length, "trial")} · ${metricName(d.primary)} of each finished run`),
        h("div", { class: "table-wide" }, h("table", { class: "data-table sweep-table" },
          h("thead", {}, h("tr", {},
            ...["#", "State", "Options", "Epoch", metricName(d.primary), "Run"].map((t, i) =>
              h("th", { scope: "col", class: [0, 3, 4].includes(i) ? "num" : "" }, t)))),
          h("tbody", {}, ...d.trials.map((t) => trialRow(d, t))))));
      details.open = open.has(d.id);
      details.addEventListener("toggle", () => (details.open ? open.add(d.id) : open.delete(d.id)));
      return h("li", { class: "sweep-item", dataset: { sweep: d.id, state: d.state } },
        h("div", { class: "sweep-head" },
          h("strong", { class: "sweep-id" }, d.id), stateBadge(d.state),
          h("span", { class: "muted sweep-facts" }, facts.join(" · ")), cancel),
        d.job && d.job.message && running(d) ? h("p", { class: "muted small sweep-message" }, d.job.message) : null,
        d.error ? h("p", { class: "alert alert-error sweep-failure" }, d.error) : null,
        details);
    }

    async function load() {
      clearTimeout(timer);
      const all = await api(apiUrl("/sweeps"));
      const mine = all.filter((s) => (s.board || s.dataset) === DATASET); // where its trials' runs land
      const details = (await Promise.all(mine.map((s) => {
        const last = seen.get(s.id);
        if (last && !running(last) && last.updated_at === s.updated_at) return last;
        return api(apiUrl(`/sweeps/${enc(s.id)}`)).catch((err) => (err.status === 404 ? null : Promise.reject(err)));
      }))).filter(Boolean);
      let ended = false;
      for (const d of details) {
        const last = seen.get(d.id);
        if (last && finished(d) > finished(last)) ended = true;
        if (!last && running(d)) open.add(d.id); // a running sweep shows its trials
        seen.set(d.id, d);
      }
      list.replaceChildren(...details.map(item));
      $("#sweeps").hidden = !details.length;
      if (ended) onTrialFinished();
      if (details.some(running)) timer = setTimeout(() => load().catch(report("sweeps")), POLL_MS);
    }
    return { load, open: (id) => open.add(id) };
  }

  // ============================================================================ the page
  async function main() {
    const selection = makeSelection();
    const panel = comparePanel(selection);
    selection.onChange = () => panel.render().catch(report("compare"));
    $("#compare-clear").addEventListener("click", () => selection.clear());
    let cards = [];

    async function loadBoard() {
      let board;
      try {
        board = await api(apiUrl(`/leaderboards/${enc(DATASET)}`));
      } finally {
        $("#board-groups").setAttribute("aria-busy", "false");
      }
      const groups = board.groups || [];
      const unranked = board.unranked || [];
      const note = $("#board-note");
      note.textContent = board.note || "";
      note.hidden = !board.note;
      cards = groups.map((g, i) => groupCard(g, i, selection));
      $("#board-groups").replaceChildren(...cards.map((c) => c.card));
      $("#board-empty").hidden = groups.length + unranked.length > 0;
      $("#board-unranked").hidden = !unranked.length;
      $("#unranked-list").replaceChildren(...unranked.map(unrankedItem));
      cards.forEach((c, i) => drawChart(c.chart, groups[i]));
      return board;
    }

    const board = await loadBoard();
    // the charts follow the width of their card (the window, a sidebar, a rotated tablet)
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => cards.forEach((c) => { if (!c.chart.hidden && window.Plotly) window.Plotly.Plots.resize(c.chart); }), 100);
    });

    // a trial that finishes, or a submission scored (board.js), is a new run on the board
    const reloadBoard = () => {
      panel.forget();
      loadBoard().then((b) => selection.sync([...(b.groups || []).flatMap((g) => g.rows), ...(b.unranked || [])]))
        .catch(report("leaderboard"));
    };
    document.addEventListener("vitrine:board-changed", reloadBoard);
    embedForm(reloadBoard);
    const sweeps = sweepList(reloadBoard);
    const form = sweepForm((started) => {
      sweeps.open(started.sweep_id);
      sweeps.load().catch(report("sweeps"));
    });
    if (form) {
      form.start()
        .then(() => form.guessTask(((board.groups || [])[0] || (board.unranked || [])[0] || {}).task))
        .catch(report("the sweep form"));
    }
    await sweeps.load();
  }

  main().catch(report("leaderboard"));
})();
