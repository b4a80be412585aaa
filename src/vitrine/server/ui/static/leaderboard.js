/* vitrine web UI, the leaderboard of a dataset (/leaderboards/{dataset}): for each group of runs scored
 * on the same split (one split fingerprint), a speed-vs-accuracy chart with the Pareto front and a
 * sortable table; the runs without a fingerprint listed apart; and a panel comparing 2 to 4 ticked
 * runs side by side (metrics, speed and cost, the options that differ, per-class numbers).
 * Everything shown comes from GET /api/v1/leaderboards/{dataset} and the runs' detail routes, so a
 * user sees only the runs the API lets them read. Helpers come from common.js.
 */
(() => {
  "use strict";

  const {
    $, DATASET, enc, apiUrl, h, isNum, pct, formatBytes, formatDuration, stateBadge, runPage, detectionRunPage,
    COLORS, layout, plot, api, report,
  } = window.vitrine;

  const MAX_COMPARE = 4;
  const METRIC_NAMES = {
    accuracy: "Accuracy", macro_f1: "Macro-F1", macro_precision: "Macro precision", macro_recall: "Macro recall",
    weighted_f1: "Weighted F1", weighted_precision: "Weighted precision", weighted_recall: "Weighted recall", bbox_map50: "Box mAP@.5", bbox_map: "Box mAP@.5:.95",
    bbox_map75: "Box mAP@.75", bbox_precision: "Box precision", bbox_recall: "Box recall", bbox_f1: "Box F1",
    bbox_mean_iou: "Box mean IoU", segm_map50: "Mask mAP@.5", segm_map: "Mask mAP@.5:.95", segm_map75: "Mask mAP@.75",
    segm_precision: "Mask precision", segm_recall: "Mask recall", segm_f1: "Mask F1", segm_mean_iou: "Mask mean IoU",
  };
  const TASK_NAMES = { classify: "Classification", detect: "Detection" };
  const PALETTE = ["#2c5fb8", "#e29a2d", "#2f9e5b", "#c2410c", "#7c3aed", "#0f766e", "#be185d", "#4d7c0f", "#64748b", "#a16207"];
  const SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon", "triangle-down", "pentagon"];
  // numbers where less is better: the first click on their column sorts lowest first
  const LOWER_FIRST = new Set(["rank", "latency_ms", "parameters", "gflops", "weights_bytes", "train_seconds"]);
  const TEXT_KEYS = new Set(["id", "arch", "size", "owner"]);

  const metricName = (key) => METRIC_NAMES[key] || key;
  const pageOf = (row) => (row.task === "detect" ? detectionRunPage(row.id) : runPage(row.id));
  const isRate = (key) => key === "accuracy"; // a share, shown in %; the other scores as 0.000
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

  function compareRows(sort) {
    return (a, b) => {
      const x = a[sort.key]; const y = b[sort.key];
      const nx = x === null || x === undefined || x === ""; const ny = y === null || y === undefined || y === "";
      if (nx || ny) return nx && ny ? 0 : nx ? 1 : -1; // missing values last, whatever the direction
      const c = TEXT_KEYS.has(sort.key) ? String(x).localeCompare(String(y)) : x - y;
      return sort.desc ? -c : c;
    };
  }

  function groupCard(group, index, selection) {
    const primaryTitle = metricName(group.primary_metric);
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
      const rows = [...group.rows].sort(compareRows(sort));
      body.replaceChildren(...rows.map((row) => {
        const box = h("input", {
          type: "checkbox", class: "compare-pick", "aria-label": `compare ${row.id}`, dataset: { run: row.id },
          onchange: (event) => selection.toggle(row, event.currentTarget.checked),
        });
        box.checked = selection.has(row.id);
        return h("tr", { dataset: { run: row.id, pareto: row.pareto ? "true" : "false" }, class: row.pareto ? "pareto-row" : "" },
          h("td", { class: "pick" }, box),
          ...COLUMNS.map((c) => {
            if (c.key === "id") return runCell(row);
            if (c.key === "primary") return h("td", { class: "num primary-cell" }, formatMetric(group.primary_metric, row.primary));
            return h("td", { class: c.num ? "num" : "", dataset: { col: c.key } }, c.cell(row));
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
      ...COLUMNS.map((c) => h("th", { scope: "col", class: c.num ? "num" : "", title: c.help || null },
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
    const cache = new Map(); // run id -> its per-class rows (a promise)

    function perClass(row) {
      if (!cache.has(row.id)) {
        const url = row.task === "detect" ? apiUrl(`/detection/runs/${enc(row.id)}`) : apiUrl(`/runs/${enc(row.id)}`);
        cache.set(row.id, api(url).then((detail) => {
          if (row.task === "detect") {
            const rows = (detail.per_class || {}).bbox || [];
            return new Map(rows.map((r) => [String(r.class), r.ap50]));
          }
          let rows = detail.per_class;
          if (rows && !Array.isArray(rows) && typeof rows === "object") {
            rows = Object.entries(rows).filter(([, v]) => v && typeof v === "object").map(([k, v]) => ({ class: k, ...v }));
          }
          return new Map((Array.isArray(rows) ? rows : []).map((r) => [String(r.class), r.f1]));
        }));
      }
      return cache.get(row.id);
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
      const tables = await Promise.all(rows.map((r) => perClass(r).catch(() => new Map())));
      if (selection.rows().map((r) => r.id).join() !== rows.map((r) => r.id).join()) return; // changed meanwhile
      const classes = [];
      for (const t of tables) for (const k of t.keys()) if (!classes.includes(k)) classes.push(k);
      const what = rows.every((r) => r.task === "detect") ? "box AP@.5" : rows.every((r) => r.task !== "detect") ? "F1" : "F1 or box AP@.5";
      $("#compare-classes-title").textContent = `Per class (${what})`;
      headRow($("#compare-classes-head"), rows, "Class");
      $("#compare-classes-body").replaceChildren(...classes.map((c) =>
        line(c, rows, tables.map((t) => t.get(c)), { best: "max", text: (v) => (isNum(v) ? v.toFixed(3) : "—") })));
      $("#compare-classes").hidden = !classes.length;
      $("#compare-classes-none").hidden = classes.length > 0;
    }
    return { render };
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

  // ============================================================================ the page
  async function main() {
    const selection = makeSelection();
    const panel = comparePanel(selection);
    selection.onChange = () => panel.render().catch(report("compare"));
    $("#compare-clear").addEventListener("click", () => selection.clear());
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
    const cards = groups.map((g, i) => groupCard(g, i, selection));
    $("#board-groups").replaceChildren(...cards.map((c) => c.card));
    $("#board-empty").hidden = groups.length + unranked.length > 0;
    $("#board-unranked").hidden = !unranked.length;
    $("#unranked-list").replaceChildren(...unranked.map(unrankedItem));
    cards.forEach((c, i) => drawChart(c.chart, groups[i]));
    // the charts follow the width of their card (the window, a sidebar, a rotated tablet)
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => cards.forEach((c) => { if (!c.chart.hidden && window.Plotly) window.Plotly.Plots.resize(c.chart); }), 100);
    });
  }

  main().catch(report("leaderboard"));
})();
