/* vitrine web UI, the curation page of a collection (/p/{name}/curate) or of a classification
 * dataset (/datasets/{name}/curate): near-duplicate groups at a threshold the user sets (the image
 * to keep marked, with the rule that chose it; each other image's similarity to it; byte-identical
 * copies marked), outliers (most isolated first) and, on a dataset, the images whose label
 * disagrees with their neighbours'. Each list is sorted and paged by the API
 * (GET .../duplicates|outliers|label-errors?sort=&offset=&limit=); ticked images are exported as
 * CSV (a collection: POST /api/v1/projects/{name}/export, as on the search page, which can also
 * save them as a new dataset; a dataset: the rows shown, written here).
 *
 * The list, its parameters and the page are in the URL, so a list can be reloaded and shared.
 * Data from the API is put in the page with textContent or attributes, never parsed as HTML.
 */
(() => {
  "use strict";

  const {
    $, h, encPath, apiUrl, plural, pct, formatBytes, formatDuration, PROJECT, DATASET, projectApi, imagePage,
    thumbUrl, datasetApi, datasetThumbUrl, datasetPage, ApiError, api, exportImages, showError, clearError, download,
  } = window.vitrine;
  const body = document.body;
  const SCOPE = body.dataset.scope === "dataset" ? "dataset" : "project";
  const NAME = SCOPE === "dataset" ? DATASET : PROJECT;

  const TABS = {
    duplicates: {
      title: "Near-duplicate groups",
      field: "groups",
      sorts: [["size", "largest group first"], ["similarity", "most similar first"], ["name", "by name"]],
      params: ["threshold"],
    },
    outliers: {
      title: "Outliers",
      field: "outliers",
      sorts: [["score", "most isolated first"], ["name", "by name"]],
      params: ["k"],
    },
    "label-errors": {
      title: "Label errors",
      field: "errors",
      sorts: [["score", "most neighbours agreeing first"], ["label", "by given label"], ["name", "by name"]],
      params: ["k"],
    },
  };
  const DEFAULTS = { threshold: "0.75", k: "10", limit: "24" };
  const MEMBERS_SHOWN = 12; // images of a group drawn at first

  const listEl = $("#curate-list");
  const panel = $("#curate-panel");
  const sortSelect = $("#curate-sort");
  const thresholdInput = $("#threshold");
  const thresholdRange = $("#threshold-range");
  const pixelsBox = $("#pixels");
  const kInput = $("#k");
  const sizeSelect = $("#page-size");
  let seq = 0;

  // ---------------------------------------------------------------------------- URLs
  const listApi = (tab, params) =>
    (SCOPE === "dataset" ? datasetApi(NAME, `/${tab}`) : projectApi(`/${tab}`)) + `?${params}`;
  const thumb = (path) => (SCOPE === "dataset" ? datasetThumbUrl(NAME, path, 320) : thumbUrl(path));
  const linkTo = (path) => (SCOPE === "dataset" ? datasetApi(NAME, `/images/${encPath(path)}`) : imagePage(path));

  function readUrl() {
    const p = new URLSearchParams(window.location.search);
    let tab = p.get("tab") || "duplicates";
    if (!TABS[tab] || (tab === "label-errors" && SCOPE !== "dataset")) tab = "duplicates";
    const sorts = TABS[tab].sorts.map(([v]) => v);
    const sort = sorts.includes(p.get("sort")) ? p.get("sort") : sorts[0];
    return {
      tab, sort,
      threshold: p.get("threshold") || DEFAULTS.threshold,
      pixels: p.get("pixels") === "0" ? "0" : "1", // 0: the vectors alone, no pixel check
      k: p.get("k") || DEFAULTS.k,
      limit: ["12", "24", "48", "96"].includes(p.get("limit")) ? p.get("limit") : DEFAULTS.limit,
      offset: Math.max(0, parseInt(p.get("offset") || "0", 10) || 0),
      model: p.get("model") || "",
    };
  }

  function urlFor(s) {
    const p = new URLSearchParams();
    if (s.tab !== "duplicates") p.set("tab", s.tab);
    if (s.sort !== TABS[s.tab].sorts[0][0]) p.set("sort", s.sort);
    if (s.tab === "duplicates" && s.threshold !== DEFAULTS.threshold) p.set("threshold", s.threshold);
    if (s.tab === "duplicates" && s.pixels === "0") p.set("pixels", "0");
    if (s.tab !== "duplicates" && s.k !== DEFAULTS.k) p.set("k", s.k);
    if (s.limit !== DEFAULTS.limit) p.set("limit", s.limit);
    if (s.offset) p.set("offset", String(s.offset));
    if (s.model) p.set("model", s.model);
    const qs = p.toString();
    return window.location.pathname + (qs ? `?${qs}` : "");
  }

  function go(changes) {
    const s = { ...readUrl(), ...changes };
    window.history.pushState(null, "", urlFor(s));
    return load();
  }

  // ---------------------------------------------------------------------------- selection
  // ticked images (path -> row for the CSV) stay ticked across the pages of one list; another list
  // or other parameters start afresh
  const picked = new Map();
  let pickedFor = null;
  let shown = []; // [{path, row, keep}] of the page shown

  function listKey(s) {
    return JSON.stringify({ tab: s.tab, threshold: s.threshold, pixels: s.pixels, k: s.k, model: s.model });
  }

  function updateSelection() {
    const n = picked.size;
    $("#selection-count").textContent = `${n} selected`;
    $("#export-csv").disabled = n === 0;
    $("#clear-selection").disabled = n === 0;
    const save = $("#export-dataset-button");
    if (save) save.disabled = n === 0;
    const all = $("#select-all");
    const on = shown.filter((x) => picked.has(x.path)).length;
    all.checked = shown.length > 0 && on === shown.length;
    all.indeterminate = on > 0 && on < shown.length;
    for (const box of listEl.querySelectorAll("input.pick")) {
      box.checked = picked.has(box.dataset.path);
      box.closest(".result").classList.toggle("picked", box.checked);
    }
  }

  function pickBox(item) {
    const box = h("input", { type: "checkbox", class: "pick", "aria-label": `select ${item.path}`, dataset: { path: item.path } });
    box.addEventListener("change", () => {
      if (box.checked) picked.set(item.path, item.row); else picked.delete(item.path);
      updateSelection();
    });
    return h("label", { class: "result-pick", title: "select for export" }, box);
  }

  $("#select-all").addEventListener("change", (event) => {
    for (const x of shown) {
      if (event.currentTarget.checked) picked.set(x.path, x.row); else picked.delete(x.path);
    }
    updateSelection();
  });
  $("#select-extra").addEventListener("click", () => {
    for (const x of shown) {
      if (x.keep) picked.delete(x.path); else picked.set(x.path, x.row);
    }
    updateSelection();
  });
  $("#clear-selection").addEventListener("click", () => { picked.clear(); updateSelection(); });

  function csvText(rows) {
    const cell = (v) => {
      const s = v === null || v === undefined ? "" : String(v);
      return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    };
    const cols = Object.keys(rows[0] || { path: "" });
    return [cols.join(","), ...rows.map((r) => cols.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
  }

  function exportDone(nodes) {
    const done = $("#export-done");
    done.replaceChildren(...nodes);
    done.hidden = false;
  }

  $("#export-csv").addEventListener("click", async () => {
    clearError();
    const s = readUrl();
    const filename = `${NAME}_${s.tab}.csv`;
    try {
      if (SCOPE === "project") {
        const scores = {};
        for (const [path, row] of picked) if (typeof row.score === "number") scores[path] = row.score;
        const res = await exportImages({ paths: [...picked.keys()], format: "csv", scores });
        download(await res.blob(), filename);
      } else {
        download(new Blob([csvText([...picked.values()])], { type: "text/csv" }), filename);
      }
      exportDone([`Exported ${plural(picked.size, "image")} as CSV.`]);
    } catch (err) {
      showError(err, "export as CSV");
    }
  });

  const saveForm = $("#export-dataset");
  if (saveForm) {
    saveForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const name = $("#dataset-name").value.trim();
      const label = $("#dataset-label").value.trim() || readUrl().tab;
      try {
        const res = await exportImages({ paths: [...picked.keys()], format: "dataset", dataset_name: name, label });
        const data = await res.json();
        exportDone([`Saved ${plural(data.samples, "image")} as dataset `,
          h("a", { href: datasetPage(data.dataset) }, data.dataset), ` (class “${label}”).`]);
      } catch (err) {
        showError(err, "save as dataset");
      }
    });
  }

  // ---------------------------------------------------------------------------- rendering
  function card(item, bits, extraClass) {
    return h("li", { class: `result${extraClass ? ` ${extraClass}` : ""}`, dataset: { path: item.path } },
      pickBox(item),
      h("a", { class: "result-link", href: linkTo(item.path), title: item.path },
        h("div", { class: "thumb" }, h("img", {
          src: thumb(item.path), alt: item.path, loading: "lazy", decoding: "async",
          onerror: (event) => event.currentTarget.closest(".thumb").classList.add("broken"),
        })),
        h("div", { class: "result-text" },
          h("span", { class: "caption" }, item.path),
          h("span", { class: "result-meta" }, bits.filter(Boolean)))));
  }

  const dims = (m) => (m.width && m.height ? h("span", { class: "dims" }, `${m.width}×${m.height}`) : null);
  const bytes = (m) => (m.size ? h("span", {}, formatBytes(m.size)) : null);
  const exact = (m) => (m.exact_duplicates && m.exact_duplicates.length
    ? h("span", { class: "badge badge-warn exact", title: `byte-for-byte copies:\n${m.exact_duplicates.join("\n")}` },
      `+${plural(m.exact_duplicates.length, "exact copy", "exact copies")}`)
    : null);
  const RULES = {
    resolution: "the largest resolution", "file size": "the largest file", oldest: "the oldest file",
    path: "the first path (all else equal)", "only image": "the only image",
  };

  function renderGroups(groups, offset) {
    const items = [];
    const list = h("ol", { class: "dup-groups", start: String(offset + 1) });
    groups.forEach((g, i) => {
      const members = [g.keep, ...g.others];
      const head = h("div", { class: "dup-head" },
        h("strong", {}, `Group ${offset + i + 1}`),
        h("span", { class: "muted" }, ` · ${plural(members.length, "image")} · keep: ${RULES[g.keep_rule] || g.keep_rule}`),
        g.labels_differ ? h("span", { class: "badge badge-warn", title: `labels: ${(g.labels || []).join(", ")}` }, "labels differ") : null);
      const grid = h("ul", { class: "grid dup-members" });
      const memberCard = (m, j) => {
        const keep = j === 0;
        const row = { path: m.path, group: offset + i + 1, keep: keep ? "yes" : "", score: m.similarity, keep_rule: keep ? g.keep_rule : "" };
        const item = { path: m.path, row, keep };
        return [item, card(item, [
          keep ? h("span", { class: "badge keep", title: `kept for ${RULES[g.keep_rule] || g.keep_rule}` }, "keep")
            : h("span", { class: "score", title: "cosine similarity to the image kept" }, m.similarity.toFixed(3)),
          !keep && typeof m.pixel_similarity === "number"
            ? h("span", { class: "muted pixels", title: "correlation of the two pictures' 16 × 16 grey thumbnails: how alike the pixels are, not the content" }, `pixels ${m.pixel_similarity.toFixed(2)}`)
            : null,
          dims(m), bytes(m), exact(m),
        ], keep ? "kept" : "")];
      };
      // a large group (a low threshold can link hundreds) shows its first images, the rest on demand
      const built = members.map(memberCard);
      built.forEach(([item]) => items.push(item));
      grid.append(...built.slice(0, MEMBERS_SHOWN).map(([, node]) => node));
      const more = built.length > MEMBERS_SHOWN ? h("button", {
        type: "button", class: "button small dup-more",
        onclick: (event) => {
          grid.append(...built.slice(MEMBERS_SHOWN).map(([, node]) => node));
          event.currentTarget.remove();
          updateSelection();
        },
      }, `Show all ${built.length} images of this group`) : null;
      list.append(h("li", { class: "dup-group" }, head, grid, more));
    });
    listEl.replaceChildren(list);
    return items;
  }

  function renderOutliers(rows, offset) {
    const items = [];
    const grid = h("ol", { class: "grid", start: String(offset + 1) });
    rows.forEach((o) => {
      const item = { path: o.path, row: { path: o.path, score: o.score, nearest: o.nearest || "", nearest_similarity: o.nearest_similarity ?? "" } };
      items.push(item);
      grid.append(card(item, [
        h("span", { class: "score", title: "mean cosine distance to its k nearest neighbours (higher: more isolated)" }, o.score.toFixed(3)),
        o.nearest ? h("span", { class: "nearest", title: `nearest image: ${o.nearest}` },
          `nearest ${typeof o.nearest_similarity === "number" ? o.nearest_similarity.toFixed(2) : ""}`) : null,
      ]));
    });
    listEl.replaceChildren(grid);
    return items;
  }

  function renderErrors(rows, offset) {
    const items = [];
    const grid = h("ol", { class: "grid", start: String(offset + 1) });
    rows.forEach((e) => {
      const row = { path: e.path, label: e.label, suggested: e.suggested, agreement: e.agreement, label_agreement: e.label_agreement, split: e.split || "" };
      const item = { path: e.path, row };
      items.push(item);
      grid.append(card(item, [
        h("span", { class: "label-change" },
          h("span", { class: "given", title: "the label it has" }, e.label), " → ",
          h("strong", { class: "suggested", title: "the label most of its neighbours have" }, e.suggested)),
        h("span", { class: "score agreement", title: `share of its neighbours labelled ${e.suggested} (its own label: ${pct(e.label_agreement, 0)})` }, `${pct(e.agreement, 0)} agree`),
        e.split ? h("span", { class: `split-pill split-${e.split}` }, e.split) : null,
      ]));
    });
    listEl.replaceChildren(grid);
    return items;
  }

  function describe(s, data) {
    const model = data.model ? `${data.model}${data.space ? ` (${data.space} space)` : ""}` : "";
    if (s.tab === "duplicates") {
      const exactCount = (data.exact || []).length;
      return [
        `${plural(data.total, "group")} among ${plural(data.images, "image")} at similarity ≥ ${Number(data.threshold).toFixed(2)}`,
        exactCount ? `${plural(exactCount, "image")} with byte-identical copies` : "",
        data.pixel_check && data.pixel_check.rejected_pairs
          ? `${plural(data.pixel_check.rejected_pairs, "pair")} alike in content but not in pixels left out` : "",
        model ? `vectors of ${model}` : "",
      ].filter(Boolean).join(" · ");
    }
    if (s.tab === "outliers") {
      return [`${plural(data.images, "image")} by their mean distance to their ${data.k} nearest neighbours`,
        model ? `vectors of ${model}` : ""].filter(Boolean).join(" · ");
    }
    return [`${plural(data.total, "image")} of ${data.images} whose label most of their ${data.k} nearest neighbours do not share`,
      model ? `embeddings of ${model}` : ""].filter(Boolean).join(" · ");
  }

  /** A collection's byte-identical copies (one content, several files): known by their hash,
   * listed whether or not they are in a near-duplicate group. */
  function showExact(exactRows) {
    const box = $("#exact-copies");
    box.hidden = exactRows.length === 0;
    $("#exact-summary").textContent = `Exact copies: ${plural(exactRows.length, "image has", "images have")} byte-identical files`;
    $("#exact-list").replaceChildren(...exactRows.map((e) => h("li", {},
      h("a", { href: linkTo(e.path) }, e.path), ` = ${e.exact_duplicates.join(", ")}`)));
  }

  // ---------------------------------------------------------------------------- controls
  function showControls(s) {
    for (const tab of document.querySelectorAll(".curate-tab")) {
      const on = tab.dataset.tab === s.tab;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      if (on) panel.setAttribute("aria-labelledby", tab.id);
    }
    for (const el of document.querySelectorAll("#curate-controls [data-for]")) {
      el.hidden = !el.dataset.for.split(" ").includes(s.tab);
    }
    sortSelect.replaceChildren(...TABS[s.tab].sorts.map(([v, text]) => h("option", { value: v }, text)));
    sortSelect.value = s.sort;
    thresholdInput.value = s.threshold;
    thresholdRange.value = s.threshold;
    pixelsBox.checked = s.pixels !== "0";
    kInput.value = s.k;
    sizeSelect.value = s.limit;
    if ([...modelSelect.options].some((o) => o.value === s.model)) modelSelect.value = s.model;
    $("#list-title").textContent = TABS[s.tab].title;
    $("#select-extra").hidden = s.tab !== "duplicates";
  }

  for (const tab of document.querySelectorAll(".curate-tab")) {
    tab.addEventListener("click", () => go({ tab: tab.dataset.tab, sort: TABS[tab.dataset.tab].sorts[0][0], offset: 0 }));
    tab.addEventListener("keydown", (event) => {
      const tabs = [...document.querySelectorAll(".curate-tab")];
      const i = tabs.indexOf(tab);
      const next = event.key === "ArrowRight" ? tabs[(i + 1) % tabs.length]
        : event.key === "ArrowLeft" ? tabs[(i - 1 + tabs.length) % tabs.length] : null;
      if (next) { event.preventDefault(); next.focus(); next.click(); }
    });
  }
  thresholdRange.addEventListener("input", () => { thresholdInput.value = thresholdRange.value; });
  thresholdRange.addEventListener("change", () => $("#curate-controls").requestSubmit());
  thresholdInput.addEventListener("input", () => { thresholdRange.value = thresholdInput.value; });
  pixelsBox.addEventListener("change", () => $("#curate-controls").requestSubmit());
  sortSelect.addEventListener("change", () => go({ sort: sortSelect.value, offset: 0 }));
  sizeSelect.addEventListener("change", () => go({ limit: sizeSelect.value, offset: 0 }));
  $("#curate-controls").addEventListener("submit", (event) => {
    event.preventDefault();
    const threshold = Number(thresholdInput.value);
    const k = Number(kInput.value);
    if (!(threshold > 0 && threshold <= 1)) {
      showError(new ApiError(`threshold ${thresholdInput.value || "(empty)"} is out of range`, "a cosine similarity in (0, 1], e.g. 0.75"));
      return;
    }
    if (!(Number.isInteger(k) && k >= 1 && k <= 1000)) {
      showError(new ApiError(`k = ${kInput.value || "(empty)"} is out of range`, "a number of neighbours from 1 to 1000, e.g. 10"));
      return;
    }
    go({
      threshold: String(threshold), pixels: pixelsBox.checked ? "1" : "0", k: String(k),
      sort: sortSelect.value, limit: sizeSelect.value, offset: 0,
    });
  });
  $("#prev").addEventListener("click", () => {
    const s = readUrl();
    go({ offset: Math.max(0, s.offset - Number(s.limit)) });
  });
  $("#next").addEventListener("click", () => {
    const s = readUrl();
    go({ offset: s.offset + Number(s.limit) });
  });
  window.addEventListener("popstate", () => load());

  // ---------------------------------------------------------------------------- the model
  // A collection indexed with several models: each has its vectors. A dataset: any embedding
  // model available here (the first list with one embeds the dataset with it, then caches).
  const modelSelect = $("#curate-model");
  async function loadModels() {
    let names = [];
    if (SCOPE === "project") {
      const status = await api(projectApi(""));
      names = Object.keys(status.indexed_models || {}).filter((m) => m !== status.model);
    } else {
      const options = await api(apiUrl("/train/options"));
      names = (options.embedding_models || []).filter((m) => m.available && m.name !== "offline-concepts").map((m) => m.name);
    }
    const wanted = readUrl().model;
    if (wanted && !names.includes(wanted)) names.push(wanted);
    modelSelect.append(...names.map((n) => h("option", { value: n }, n)));
    modelSelect.value = wanted;
    $("#model-label").hidden = names.length === 0;
  }
  modelSelect.addEventListener("change", () => go({ model: modelSelect.value, offset: 0 }));

  // ---------------------------------------------------------------------------- loading
  async function load() {
    const s = readUrl();
    const mine = ++seq;
    showControls(s);
    clearError();
    const key = listKey(s);
    if (key !== pickedFor) { picked.clear(); pickedFor = key; $("#export-done").hidden = true; }
    const params = new URLSearchParams({ sort: s.sort, offset: String(s.offset), limit: s.limit });
    if (s.tab === "duplicates") {
      params.set("threshold", s.threshold);
      if (s.pixels === "0") params.set("pixels", "false");
    } else {
      params.set("k", s.k);
    }
    if (s.model) params.set("model", s.model);
    const loading = $("#list-loading");
    $("#list-loading-text").textContent = SCOPE === "dataset"
      ? "Computing… (the first time, the dataset's images are embedded: this can take a while)"
      : "Computing…";
    loading.hidden = false;
    panel.setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      const data = await api(listApi(s.tab, params));
      if (mine !== seq) return;
      const rows = data[TABS[s.tab].field] || [];
      if (s.offset && !rows.length && data.total) { go({ offset: 0 }); return; } // past the end: first page
      const render = { duplicates: renderGroups, outliers: renderOutliers, "label-errors": renderErrors }[s.tab];
      shown = render(rows, s.offset);
      $("#list-description").textContent = describe(s, data);
      showExact(s.tab === "duplicates" ? data.exact || [] : []);
      const took = (performance.now() - started) / 1000;
      $("#list-meta").textContent = `answered in ${formatDuration(took)}`;
      const empty = $("#list-empty");
      empty.textContent = {
        duplicates: `No near duplicates at similarity ≥ ${Number(s.threshold).toFixed(2)}: lower the threshold to see looser groups.`,
        outliers: "No image.",
        "label-errors": "No label error: every image's label is the one most of its neighbours have.",
      }[s.tab];
      empty.hidden = rows.length > 0;
      $("#selection-bar").hidden = rows.length === 0 && picked.size === 0;
      const end = s.offset + rows.length;
      $("#pager").hidden = s.offset === 0 && end >= data.total;
      $("#prev").disabled = s.offset === 0;
      $("#next").disabled = end >= data.total;
      $("#page-info").textContent = rows.length ? `${s.offset + 1}–${end} of ${data.total}` : "";
      updateSelection();
    } catch (err) {
      if (mine !== seq) return;
      listEl.replaceChildren();
      shown = [];
      $("#list-description").textContent = "";
      $("#list-meta").textContent = "";
      showExact([]);
      $("#pager").hidden = true;
      $("#selection-bar").hidden = picked.size === 0;
      showError(err, `list the ${TABS[s.tab].title.toLowerCase()}`);
    } finally {
      if (mine === seq) {
        loading.hidden = true;
        panel.setAttribute("aria-busy", "false");
      }
    }
  }

  load();
  loadModels().catch((err) => { if (window.console) console.warn("models", err); });
})();
