/* vitrine web UI, the models page (/models): the models of the registry grouped by task (summary,
 * weights source, availability, licence) and, for embedding models, the CPU runtime measured on
 * this machine (GET /api/v1/models, runtime_choice) with every trial in a disclosure.
 * Helpers come from common.js.
 */
(() => {
  "use strict";

  const { $, h, isNum, formatWhen, apiUrl, api, report } = window.vitrine;

  const TASKS = [
    ["embedding", "Embedding models", "index collections and answer text and image searches"],
    ["classification", "Classification backbones", "fine-tuned on a dataset into a classifier"],
    ["detection", "Detectors", "boxes"],
    ["segmentation", "Segmentation", "boxes and instance masks"],
  ];

  const label = (v) => (v ? `${v.runtime} ${v.precision}` : "");
  const same = (a, b) => a && b && a.runtime === b.runtime && a.precision === b.precision;
  const fixed = (x, digits) => (isNum(x) ? x.toFixed(digits) : "–");
  const FIGURE_NAMES = { recall_at_10: "recall@10", mean_cosine: "mean cosine", min_cosine: "min cosine" };

  /** What became of a trial: picked, the reference, refused by the parity gate (why), failed (error). */
  function verdict(trial, choice) {
    if (same(trial, choice.picked)) return h("span", { class: "badge state-done" }, "picked");
    if (trial.error) return [h("span", { class: "badge badge-error" }, "failed"), " ", h("span", { class: "trial-why" }, trial.error)];
    if (trial.parity && !trial.parity.passed) {
      return [h("span", { class: "badge badge-warn" }, "refused"), " ", h("span", { class: "trial-why" }, trial.parity.reason)];
    }
    if (same(trial, choice.reference)) return h("span", { class: "badge" }, "reference");
    return h("span", { class: "muted" }, "passed, not fast enough");
  }

  function trialsTable(choice) {
    const ref = choice.trials.find((t) => same(t, choice.reference));
    const base = ref && ref.images_per_s;
    return h("div", { class: "table-wide" }, h("table", { class: "data-table trials-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Variant"),
        h("th", { scope: "col", class: "num" }, "Images/s"),
        h("th", { scope: "col", class: "num", title: `images/s as a multiple of ${label(choice.reference)}'s` }, "x ref"),
        h("th", { scope: "col", class: "num" }, "Recall@10"),
        h("th", { scope: "col", class: "num" }, "Mean cosine"),
        h("th", { scope: "col" }, "Verdict"))),
      h("tbody", {}, choice.trials.map((t) => {
        const figures = (t.parity && t.parity.figures) || {};
        return h("tr", { dataset: { variant: label(t) } },
          h("th", { scope: "row", class: "nowrap" }, label(t)),
          h("td", { class: "num" }, fixed(t.images_per_s, 1)),
          h("td", { class: "num" }, isNum(t.images_per_s) && base ? `${(t.images_per_s / base).toFixed(2)}x` : "–"),
          h("td", { class: "num" }, fixed(figures.recall_at_10, 3)),
          h("td", { class: "num" }, fixed(figures.mean_cosine, 4)),
          h("td", { class: "trial-verdict" }, verdict(t, choice)));
      }))));
  }

  /** The runtime line of an embedding model: the picked variant, its speed against the reference
   * and its parity figures, then every trial, the machine and when; or how to measure it. */
  function runtimeCell(model) {
    const choice = model.runtime_choice;
    if (!choice) {
      return h("p", { class: "runtime-line muted" }, "CPU runtime: not measured on this machine: run ",
        h("code", {}, `vitrine models --bench ${model.name}`));
    }
    const picked = choice.trials.find((t) => same(t, choice.picked));
    const figures = (picked && picked.parity && picked.parity.figures) || {};
    const facts = [];
    if (same(choice.picked, choice.reference)) {
      facts.push("the reference: no variant was both at parity and faster");
    } else {
      if (isNum(choice.speedup)) facts.push(`${choice.speedup.toFixed(2)}x ${label(choice.reference)}`);
      for (const key of ["recall_at_10", "mean_cosine"]) {
        if (isNum(figures[key])) facts.push(`${FIGURE_NAMES[key]} ${figures[key].toFixed(key === "mean_cosine" ? 4 : 3)}`);
      }
    }
    const notes = [...new Set(choice.trials.flatMap((t) => t.notes || []))];
    return [
      h("p", { class: "runtime-line" }, "CPU runtime: ", h("strong", { class: "runtime-picked" }, label(choice.picked)),
        facts.flatMap((f) => [h("span", { class: "sep", "aria-hidden": "true" }, " · "), f])),
      h("details", { class: "runtime-trials" },
        h("summary", {}, `Every variant tried (${choice.trials.length})`),
        trialsTable(choice),
        h("p", { class: "muted small" },
          `Measured ${formatWhen(choice.measured_at)} on ${choice.images} images (batch ${choice.batch}); machine: `,
          h("code", { class: "runtime-machine" }, choice.machine),
          choice.weights ? ["; weights ", h("code", {}, choice.weights)] : null),
        notes.length ? h("p", { class: "muted small" }, notes.join("; ")) : null),
    ];
  }

  function availability(model) {
    const badge = model.available
      ? h("span", { class: "badge state-done" }, "available")
      : h("span", { class: "badge badge-warn" }, "unavailable");
    return [badge, model.availability_detail ? h("div", { class: "muted small" }, model.availability_detail) : null];
  }

  function modelRows(model) {
    const embedding = model.task === "embedding";
    const row = h("tr", { class: embedding ? "has-runtime" : "", dataset: { model: model.name } },
      h("th", { scope: "row", class: "model-name" }, h("code", {}, model.name),
        h("div", { class: "model-summary" }, model.summary || "")),
      h("td", { class: "nowrap" }, model.weights_source || ""),
      h("td", { class: "model-availability" }, availability(model)),
      h("td", { class: "model-license small" }, model.license || ""));
    if (!embedding) return [row];
    return [row, h("tr", { class: "runtime-row", dataset: { model: model.name } },
      h("td", { colspan: "4" }, runtimeCell(model)))];
  }

  function group(id, title, blurb, models) {
    return h("section", { class: "table-card", id: `models-${id}`, "aria-labelledby": `models-${id}-title` },
      h("h2", { id: `models-${id}-title` }, title, " ", h("span", { class: "muted small" }, blurb)),
      h("div", { class: "table-wide" }, h("table", { class: "data-table models-table" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Model"),
          h("th", { scope: "col" }, "Weights"),
          h("th", { scope: "col" }, "Availability"),
          h("th", { scope: "col" }, "Licence"))),
        h("tbody", {}, models.flatMap(modelRows)))));
  }

  async function load() {
    const root = $("#models");
    try {
      const models = await api(apiUrl("/models"));
      const known = new Set(TASKS.map(([task]) => task));
      const groups = TASKS.map(([task, title, blurb]) => [task, title, blurb, models.filter((m) => m.task === task)]);
      const others = models.filter((m) => !known.has(m.task));
      if (others.length) groups.push(["other", "Other models", "", others]);
      root.replaceChildren(...groups.filter((g) => g[3].length).map((g) => group(...g)));
      if (!models.length) root.replaceChildren(h("p", { class: "empty" }, "No model is registered."));
    } finally {
      root.setAttribute("aria-busy", "false");
    }
  }

  load().catch(report("models"));
})();
