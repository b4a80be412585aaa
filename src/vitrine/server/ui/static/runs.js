/* vitrine web UI, the runs page (/runs): the table of classification runs (sortable, refreshed
 * while one trains), then the detection runs with their mAP and the "Train a detector" form.
 * Helpers come from common.js.
 */
(() => {
  "use strict";

  const {
    $, DATASET, enc, apiUrl, h, isNum, formatDuration, pct, score, decimal, formatWhen, stateBadge, runPage,
    datasetPage, detectionRunPage, leaderboardPage, api, showError, clearError, report,
  } = window.vitrine;

  // ============================================================================ classification runs
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
        h("td", {}, r.dataset ? [h("a", { href: datasetPage(r.dataset) }, r.dataset), " ",
          h("a", { class: "board-link small", href: leaderboardPage(r.dataset), title: `the leaderboard of ${r.dataset}` }, "leaderboard")] : ""),
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

  // ============================================================================ detection runs
  function detectionRunsMain() {
    async function loadRuns() {
      const rows = await api(apiUrl("/detection/runs"));
      const table = $("#det-runs-table");
      table.setAttribute("aria-busy", "false");
      $("#no-det-runs").hidden = rows.length > 0;
      $("#det-runs-body").replaceChildren(...rows.map((r) =>
        h("tr", {},
          h("th", { scope: "row" }, h("a", { href: detectionRunPage(r.id) }, r.id)),
          h("td", {}, r.kind || ""),
          h("td", {}, r.dataset ? h("a", { class: "board-link", href: leaderboardPage(r.dataset), title: `the leaderboard of ${r.dataset}` }, r.dataset) : ""),
          h("td", {}, r.model || ""),
          h("td", {}, h("span", { class: `badge state-${r.state || ""}` }, r.state || "")),
          h("td", { class: "num" }, decimal(r.bbox_map50)),
          h("td", { class: "num" }, decimal(r.bbox_map)),
          h("td", { class: "num" }, decimal(r.segm_map50)),
          h("td", { class: "num" }, decimal(r.segm_map)),
          h("td", { class: "num" }, isNum(r.ms_per_image) ? `${decimal(r.ms_per_image, 1)} ms` : "–"))));
    }

    const form = $("#det-train-form");
    if (form) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        clearError();
        const config = { arch: form.arch.value, backbone: form.backbone.value };
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
          window.location.href = detectionRunPage(job.run_id, job.id);
        } catch (err) {
          showError(err, "cannot start the training");
        } finally {
          button.disabled = false;
        }
      });
    }
    loadRuns().catch(report("detection runs"));
  }

  runsPageMain();
  if ($("#det-runs-table")) detectionRunsMain();
})();
