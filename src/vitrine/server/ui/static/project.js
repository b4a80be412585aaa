/* vitrine web UI, a collection's page (/p/{name}): status and indexing, search by text, keyword,
 * example image or upload with folder and tag filters, a score cut-off and a sort order, browsing,
 * tags; ticking results and exporting them as CSV or as a new classification dataset. A small client of the REST
 * API (/api/v1); no build step, no dependencies; helpers come from common.js.
 *
 * Every URL is built from the prefix the server gave in <body data-base>, so the UI works behind a
 * reverse proxy that serves it under a path (e.g. /proxy/8000). Data from the API is always put in
 * the page with textContent or attributes, never parsed as HTML.
 */
(() => {
  "use strict";

  const {
    $, enc, apiUrl, h, plural, basename, formatDuration, projectApi, projectPage, datasetPage, fillGrid, ApiError,
    isActive,
    showJobState, api, exportImages, showError, clearError, report, fetchJob, cancelJob, download,
  } = window.vitrine;
  const body = document.body;
  const PAGE_SIZE = 24;
  const POLL_MS = 500;

  // ---------------------------------------------------------------------------- formatting
  function timeAgo(epochSeconds) {
    const diff = epochSeconds - Date.now() / 1000; // negative: in the past
    const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
    const abs = Math.abs(diff);
    if (abs < 60) return rtf.format(Math.round(diff), "second");
    if (abs < 3600) return rtf.format(Math.round(diff / 60), "minute");
    if (abs < 86400) return rtf.format(Math.round(diff / 3600), "hour");
    return rtf.format(Math.round(diff / 86400), "day");
  }

  // ============================================================================ project page
  function projectPageMain() {
    const form = $("#search-form");
    const input = $("#search-input");
    const folderSelect = $("#folder-select");
    const uploadInput = $("#upload-input");
    const resultsSection = $("#results-section");
    const resultsList = $("#results");
    const minScoreInput = $("#min-score");
    const sortSelect = $("#sort-select");
    const prev = $("#prev");
    const next = $("#next");
    let runSeq = 0;
    let upload = null; // {file, offset} while the results shown come from an uploaded image
    let current = { mode: "browse", offset: 0, hasMore: false };
    let previewUrl = null;
    let statusModel = null; // the project's model, from its status: named while a first query loads it

    // ------------------------------------------------------------ state in the URL
    function readUrl() {
      const p = new URLSearchParams(window.location.search);
      const offset = Math.max(0, parseInt(p.get("offset") || "0", 10) || 0);
      return {
        q: (p.get("q") || "").trim(), keyword: p.get("keyword") || "", folder: p.get("folder") || "",
        tag: (p.get("tag") || "").trim().toLowerCase(), offset,
        min_score: p.get("min_score") || "", sort: p.get("sort") || "",
      };
    }

    function urlFor(s) {
      const p = new URLSearchParams();
      if (s.q) p.set("q", s.q);
      else if (s.keyword) p.set("keyword", s.keyword);
      if (s.folder) p.set("folder", s.folder);
      if (s.tag) p.set("tag", s.tag);
      if (s.min_score) p.set("min_score", s.min_score);
      if (s.sort && s.sort !== "score") p.set("sort", s.sort);
      if (s.offset) p.set("offset", String(s.offset));
      const qs = p.toString();
      return projectPage(qs ? `?${qs}` : "");
    }

    function go(s) {
      upload = null;
      window.history.pushState(null, "", urlFor(s));
      return runFromUrl();
    }

    function setFolderValue(folder) {
      if (folder && ![...folderSelect.options].some((o) => o.value === folder)) {
        folderSelect.append(h("option", { value: folder }, folder));
      }
      folderSelect.value = folder || "";
    }

    function markChip(keyword) {
      for (const chip of document.querySelectorAll("#chips .chip")) {
        const on = keyword && chip.dataset.keyword === keyword;
        chip.classList.toggle("active", Boolean(on));
        if (on) chip.setAttribute("aria-current", "true"); else chip.removeAttribute("aria-current");
      }
    }

    function markTag(tag) {
      for (const chip of document.querySelectorAll("#tag-chips .chip")) {
        const on = tag && chip.dataset.tag === tag;
        chip.classList.toggle("active", Boolean(on));
        if (on) chip.setAttribute("aria-current", "true"); else chip.removeAttribute("aria-current");
      }
    }

    // ------------------------------------------------------------ running queries
    function setPreview(file) {
      const img = $("#query-preview");
      if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
      if (file) {
        previewUrl = URL.createObjectURL(file);
        img.src = previewUrl;
        img.hidden = false;
      } else {
        img.removeAttribute("src");
        img.hidden = true;
      }
    }

    function setHeader(title, description, meta) {
      const t = $("#results-title");
      t.replaceChildren(...(Array.isArray(title) ? title : [title]));
      const d = $("#results-description");
      d.textContent = description || "";
      d.hidden = !description;
      $("#results-meta").textContent = meta || "";
    }

    // ------------------------------------------------------------ choosing results to export
    // The chosen results (path -> score, or null when browsing) stay chosen across the pages of one
    // query; another query, folder, cut-off or order starts afresh.
    const picked = new Map();
    let pickedFor = null;
    let shown = [];

    function queryKey() {
      const s = readUrl();
      return JSON.stringify(upload ? { upload: upload.file.name, folder: folderSelect.value, min: minScoreInput.value, sort: sortSelect.value } : { ...s, offset: 0 });
    }

    function updateSelection() {
      const n = picked.size;
      $("#selection-count").textContent = `${n} selected`;
      $("#export-csv").disabled = n === 0;
      $("#export-dataset-button").disabled = n === 0;
      const all = $("#select-all");
      const shownPicked = shown.filter((hit) => picked.has(hit.path)).length;
      all.checked = shown.length > 0 && shownPicked === shown.length;
      all.indeterminate = shownPicked > 0 && shownPicked < shown.length;
      for (const li of resultsList.querySelectorAll(".result")) {
        const on = picked.has(li.dataset.path);
        li.classList.toggle("picked", on);
        const box = li.querySelector(".result-pick input");
        if (box) box.checked = on;
      }
    }

    function addPickers(hits) {
      const key = queryKey();
      if (key !== pickedFor) { picked.clear(); pickedFor = key; $("#export-done").hidden = true; }
      shown = hits;
      const byPath = new Map(hits.map((hit) => [hit.path, hit]));
      for (const li of resultsList.querySelectorAll(".result")) {
        const hit = byPath.get(li.dataset.path);
        const box = h("input", { type: "checkbox", "aria-label": `select ${li.dataset.path}` });
        box.addEventListener("change", () => {
          if (box.checked) picked.set(hit.path, typeof hit.score === "number" && !hit.label ? hit.score : null);
          else picked.delete(hit.path);
          updateSelection();
        });
        li.prepend(h("label", { class: "result-pick", title: "select for export" }, box));
      }
      $("#selection-bar").hidden = hits.length === 0 && picked.size === 0;
      updateSelection();
    }

    function exportBody(extra) {
      const scores = {};
      for (const [path, score] of picked) if (score !== null) scores[path] = score;
      return { paths: [...picked.keys()], scores, ...extra };
    }

    const postExport = (extra) => exportImages(exportBody(extra));

    function defaultLabel() {
      const s = readUrl();
      return s.q || s.keyword || (upload ? `like ${upload.file.name}` : s.tag || s.folder || "selected");
    }

    $("#select-all").addEventListener("change", (event) => {
      for (const hit of shown) {
        if (event.currentTarget.checked) picked.set(hit.path, typeof hit.score === "number" && !hit.label ? hit.score : null);
        else picked.delete(hit.path);
      }
      updateSelection();
    });

    $("#export-csv").addEventListener("click", async () => {
      clearError();
      try {
        const res = await postExport({ format: "csv" });
        download(await res.blob(), `${body.dataset.project}_results.csv`);
        const done = $("#export-done");
        done.textContent = `Exported ${plural(picked.size, "image")} as CSV.`;
        done.hidden = false;
      } catch (err) {
        showError(err, "export as CSV");
      }
    });

    $("#export-dataset").addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const name = $("#dataset-name").value.trim();
      const label = $("#dataset-label").value.trim() || defaultLabel();
      try {
        const res = await postExport({ format: "dataset", dataset_name: name, label });
        const data = await res.json();
        const done = $("#export-done");
        done.replaceChildren(`Saved ${plural(data.samples, "image")} as dataset `,
          h("a", { href: datasetPage(data.dataset) }, data.dataset), ` (class “${label}”).`);
        done.hidden = false;
      } catch (err) {
        showError(err, "save as dataset");
      }
    });

    function showPage(hits, offset, hasMore, emptyText) {
      fillGrid(resultsList, hits);
      addPickers(hits);
      const empty = $("#no-results");
      empty.textContent = emptyText || "No image matches.";
      empty.hidden = hits.length > 0;
      prev.disabled = offset <= 0;
      next.disabled = !hasMore;
      $("#page-info").textContent = hits.length ? `${offset + 1}–${offset + hits.length}` : "";
      $("#pager").hidden = offset <= 0 && !hasMore;
      current.offset = offset;
      current.hasMore = hasMore;
    }

    function rangeText(result) {
      return `model ${result.model}`;
    }

    // While a query runs: the previous grid goes (it is not the answer), a line says what is
    // happening, and if it takes long, why: the first query after a start loads the model.
    let loadingTimer = null;
    function startLoading(what) {
      stopLoading();
      fillGrid(resultsList, []);
      $("#no-results").hidden = true;
      $("#pager").hidden = true;
      $("#language-note").hidden = true;
      const box = $("#results-loading");
      const text = $("#results-loading-text");
      text.textContent = `${what}…`;
      box.hidden = false;
      loadingTimer = window.setTimeout(() => {
        const model = statusModel ? `the model ${statusModel}` : "the model";
        text.textContent = `${what}: loading ${model} (the first search after the server starts takes a few seconds)…`;
      }, 800);
    }
    function stopLoading() {
      if (loadingTimer) window.clearTimeout(loadingTimer);
      loadingTimer = null;
      $("#results-loading").hidden = true;
    }

    // A query in a language the model does not read gets unrelated images: the answer says so.
    function showLanguageNote(result) {
      const box = $("#language-note");
      const note = result.language_note;
      box.hidden = !note;
      if (note) {
        $("#language-note-message").textContent = note.message;
        $("#language-note-hint").textContent = note.hint || "";
      }
    }

    async function runFromUrl() {
      const seq = ++runSeq;
      const s = readUrl();
      input.value = s.q;
      setFolderValue(s.folder);
      minScoreInput.value = s.min_score;
      sortSelect.value = ["name", "date"].includes(s.sort) ? s.sort : "score";
      markChip(s.q ? "" : s.keyword);
      markTag(s.tag);
      setPreview(null);
      clearError();
      $("#language-note").hidden = true;
      resultsSection.setAttribute("aria-busy", "true");
      const params = new URLSearchParams({ k: String(PAGE_SIZE), offset: String(s.offset) });
      if (s.folder) params.set("folder", s.folder);
      const tagNote = s.tag ? ` · tag ${s.tag}` : "";
      try {
        if (s.q || s.keyword) {
          if (s.q) params.set("q", s.q); else params.set("keyword", s.keyword);
          if (s.tag) params.set("tag", s.tag);
          if (s.min_score) params.set("min_score", s.min_score);
          if (s.sort) params.set("sort", s.sort);
          current = { mode: s.q ? "text" : "keyword", offset: s.offset, hasMore: false };
          setHeader(s.q ? ["Results for ", h("q", { id: "results-query" }, s.q)] : ["Keyword ", h("span", { id: "results-keyword", class: "chip static" }, s.keyword)],
            "", "");
          startLoading("Searching");
          const result = await api(projectApi(`/search?${params}`));
          if (seq !== runSeq) return;
          stopLoading();
          showLanguageNote(result);
          const query = result.query || {};
          if (query.kind === "keyword") {
            setHeader(["Keyword ", h("span", { id: "results-keyword", class: "chip static" }, query.keyword)],
              query.description || "(no description: the keyword itself is searched)", rangeText(result));
          } else {
            setHeader(["Results for ", h("q", { id: "results-query" }, query.text || s.q)], "", rangeText(result));
          }
          if (tagNote) $("#results-meta").textContent += tagNote;
          showPage(result.hits, s.offset, result.has_more, s.tag ? `No image tagged “${s.tag}” matches.` : "");
        } else if (s.tag) {
          current = { mode: "tag", offset: s.offset, hasMore: false };
          params.delete("k");
          params.set("limit", String(PAGE_SIZE));
          setHeader(["Tag ", h("span", { id: "results-tag", class: "chip static" }, s.tag)], "", "Loading…");
          const data = await api(projectApi(`/tags/${enc(s.tag)}?${params}`));
          if (seq !== runSeq) return;
          setHeader(["Tag ", h("span", { id: "results-tag", class: "chip static" }, data.label)],
            "Images where the detector found it, best score first", plural(data.total, "image"));
          showPage(data.hits, s.offset, data.has_more, `No image is tagged “${s.tag}”.`);
        } else {
          current = { mode: "browse", offset: s.offset, hasMore: false };
          params.delete("k");
          params.set("limit", String(PAGE_SIZE));
          const data = await api(projectApi(`/images?${params}`));
          if (seq !== runSeq) return;
          const hits = data.images.map((row) => ({ path: row.relpath, width: row.width, height: row.height, error: row.error }));
          setHeader(s.folder ? ["Folder ", h("span", { id: "results-folder" }, s.folder)] : "All images", "",
            plural(data.total, "image"));
          showPage(hits, s.offset, s.offset + hits.length < data.total,
            s.folder ? "No image in this folder." : "No image catalogued yet: click “Index now”.");
        }
      } catch (err) {
        if (seq !== runSeq) return;
        stopLoading();
        showPage([], s.offset, false, "");
        $("#no-results").hidden = true;
        $("#results-meta").textContent = "";
        showError(err);
      } finally {
        if (seq === runSeq) resultsSection.setAttribute("aria-busy", "false");
      }
    }

    async function runUpload() {
      const seq = ++runSeq;
      clearError();
      markChip("");
      input.value = "";
      setPreview(null); // shown once the server has read it as an image: never a broken preview
      resultsSection.setAttribute("aria-busy", "true");
      current = { mode: "upload", offset: upload.offset, hasMore: false };
      setHeader("Similar to the uploaded image", upload.file.name, "");
      startLoading("Searching");
      const fd = new FormData();
      fd.append("file", upload.file, upload.file.name);
      fd.append("k", String(PAGE_SIZE));
      fd.append("offset", String(upload.offset));
      if (folderSelect.value) fd.append("folder", folderSelect.value);
      if (minScoreInput.value) fd.append("min_score", minScoreInput.value);
      fd.append("sort", sortSelect.value);
      try {
        const result = await api(projectApi("/search/image"), { method: "POST", body: fd });
        if (seq !== runSeq) return;
        stopLoading();
        setPreview(upload.file);
        setHeader("Similar to the uploaded image", upload.file.name, rangeText(result));
        showPage(result.hits, upload.offset, result.has_more);
      } catch (err) {
        if (seq !== runSeq) return;
        stopLoading();
        showPage([], upload.offset, false, "");
        $("#no-results").hidden = true;
        $("#results-meta").textContent = "";
        setHeader("No search: the upload was refused", upload.file.name, "");
        showError(err, `search with ${upload.file.name}`);
      } finally {
        if (seq === runSeq) resultsSection.setAttribute("aria-busy", "false");
      }
    }

    // ------------------------------------------------------------ controls
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      go({
        q: input.value.trim(), keyword: "", folder: folderSelect.value, tag: readUrl().tag, offset: 0,
        min_score: minScoreInput.value, sort: sortSelect.value,
      });
    });

    // a new cut-off or order reruns the query shown (browsing and tag lists ignore them)
    function optionsChanged() {
      if (upload) {
        upload.offset = 0;
        runUpload();
        return;
      }
      const s = readUrl();
      go({ ...s, min_score: minScoreInput.value, sort: sortSelect.value, offset: 0 });
    }
    minScoreInput.addEventListener("change", () => {
      if (minScoreInput.value === "" || minScoreInput.checkValidity()) optionsChanged();
      else minScoreInput.reportValidity();
    });
    sortSelect.addEventListener("change", optionsChanged);

    folderSelect.addEventListener("change", () => {
      if (upload) {
        upload.offset = 0;
        window.history.pushState(null, "", urlFor({ folder: folderSelect.value }));
        runUpload();
        return;
      }
      const s = readUrl();
      go({ ...s, folder: folderSelect.value, offset: 0 });
    });

    uploadInput.addEventListener("change", () => {
      const file = uploadInput.files && uploadInput.files[0];
      if (!file) return;
      uploadInput.value = ""; // choosing the same file again searches again
      upload = { file, offset: 0 };
      window.history.pushState(null, "", urlFor({ folder: folderSelect.value }));
      runUpload();
    });

    function turnPage(delta) {
      const offset = Math.max(0, current.offset + delta * PAGE_SIZE);
      if (upload) {
        upload.offset = offset;
        runUpload();
      } else {
        go({ ...readUrl(), offset });
      }
      resultsSection.scrollIntoView({ behavior: "smooth", block: "start" });
    }
    prev.addEventListener("click", () => turnPage(-1));
    next.addEventListener("click", () => turnPage(1));

    window.addEventListener("popstate", () => {
      upload = null;
      runFromUrl();
    });

    // ------------------------------------------------------------ ontology
    async function loadOntology() {
      const onto = await api(projectApi("/ontology"));
      const box = $("#keywords");
      const chips = $("#chips");
      $("#ontology-file").textContent = onto.file ? `(${basename(onto.file)})` : "";
      if (onto.entries.length) {
        chips.replaceChildren(...onto.entries.map((entry) => h("li", {},
          h("a", {
            class: "chip", href: urlFor({ keyword: entry.keyword }), title: entry.description || entry.keyword,
            dataset: { keyword: entry.keyword },
            onclick: (event) => {
              if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
              event.preventDefault();
              go({ ...readUrl(), q: "", keyword: entry.keyword, folder: folderSelect.value, offset: 0 });
            },
          }, entry.keyword))));
      } else {
        chips.replaceChildren(h("li", { class: "muted" },
          "No keywords yet: add lines like \"Keyword\": \"description\" to the ontology file."));
      }
      box.hidden = false;
      const s = readUrl();
      markChip(s.q ? "" : s.keyword);
      const problems = onto.problems || [];
      const pbox = $("#ontology-problems");
      if (problems.length) {
        $("#ontology-problems-title").textContent =
          `${plural(problems.length, "problem")} in the ontology file ${basename(onto.file)}`;
        $("#ontology-problem-list").replaceChildren(...problems.map((p) => h("li", { class: "problem" },
          h("span", { class: "line-no" }, p.line ? `line ${p.line}` : "file"),
          p.severity === "warning" ? " (warning, the line is used)" : "", ": ",
          h("span", { class: "problem-message" }, p.message),
          p.text ? h("code", { class: "problem-text" }, p.text) : null)));
        pbox.hidden = false;
      } else {
        pbox.hidden = true;
      }
    }

    // ------------------------------------------------------------ detector tags
    async function loadTags() {
      const data = await api(projectApi("/tags"));
      const box = $("#tags");
      const chips = $("#tag-chips");
      const models = Object.entries((data.tagging && data.tagging.models) || {});
      $("#tags-model").textContent = models.length
        ? `(${models.map(([name, row]) => `${name}, score ≥ ${row.threshold}`).join("; ")})` : "";
      if (data.tags.length) {
        chips.replaceChildren(...data.tags.map((t) => h("li", {},
          h("a", {
            class: "chip tag-chip", href: urlFor({ tag: t.label }), title: `${plural(t.count, "image")} tagged ${t.label}`,
            dataset: { tag: t.label },
            onclick: (event) => {
              if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
              event.preventDefault();
              const s = readUrl();
              go({ ...s, tag: s.tag === t.label ? "" : t.label, offset: 0 }); // a second click clears it
            },
          }, t.label, h("span", { class: "count" }, String(t.count))))));
        box.hidden = false;
      } else if (models.length) {
        chips.replaceChildren(h("li", { class: "muted" }, "The detector found nothing it knows in these images."));
        box.hidden = false;
      } else {
        box.hidden = true;
      }
      markTag(readUrl().tag);
    }

    $("#tag-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const fd = new FormData();
      fd.append("threshold", $("#tag-threshold").value || "0.5");
      const button = $("#tag-button");
      button.disabled = true;
      try {
        followJob(await api(projectApi("/tag"), { method: "POST", body: fd }));
      } catch (err) {
        button.disabled = false;
        showError(err, "cannot start tagging");
      }
    });

    // ------------------------------------------------------------ index status and jobs
    const STAGES = {
      scan: "Scanning files", embed: "Embedding images", index: "Building the index", tag: "Detecting objects",
    };
    let polling = null;

    function renderStatus(st) {
      statusModel = st.model || null;
      const box = $("#index-status");
      const last = st.last_index || null;
      const lines = [];
      const reason = last && last.model_reason ? last.model_reason : "";
      // the reason's parenthesised details (a hub error, a path) are long: one short line, the rest on demand
      let shortReason = reason;
      for (let before = ""; before !== shortReason;) {  // nested parentheses: innermost first
        before = shortReason;
        shortReason = shortReason.replace(/\s*\([^()]*\)/g, "");
      }
      if (st.model && st.indexed) {
        lines.push(h("p", { class: "status-model" }, "Model ", h("strong", { id: "status-model" }, st.model),
          shortReason ? h("span", { class: "muted", id: "status-reason", title: reason }, ` — ${shortReason}`) : null,
          shortReason !== reason ? h("details", { class: "reason-details" }, h("summary", {}, "details"),
            h("p", { class: "muted" }, reason)) : null));
      } else {
        lines.push(h("p", { class: "status-model" }, h("span", { id: "status-not-indexed", class: "badge badge-warn" }, "Not indexed yet"),
          st.model ? ` An indexing run with ${st.model} was stopped before it embedded any image. Click “Index now” to carry on.`
            : " Click “Index now” to scan and embed the images."));
      }
      const facts = [
        h("span", { id: "status-files" }, plural(st.files, "image")),
        h("span", {}, plural(Object.keys(st.folders || {}).length, "folder")),
      ];
      if (st.model && st.pending) facts.push(h("span", { id: "status-pending", class: "text-warn" }, `${st.pending} still to index`));
      facts.push(h("span", { id: "status-failed", class: st.failed ? "text-warn" : "" }, `${st.failed} failed`));
      if (last && last.finished_at) {
        const when = new Date(last.finished_at * 1000);
        facts.push(h("span", { id: "status-when" }, "indexed ",
          h("time", { datetime: when.toISOString(), title: when.toLocaleString() }, timeAgo(last.finished_at))));
      }
      const joined = [];
      facts.forEach((f, i) => { if (i) joined.push(h("span", { class: "dot", "aria-hidden": "true" }, "·")); joined.push(f); });
      lines.push(h("p", { class: "status-facts" }, joined));
      box.replaceChildren(...lines);

      // one list and one count, the same ones `vitrine index` and `vitrine status` give
      const failures = st.failures || [];
      const details = $("#failures");
      if (st.failed) {
        $("#failures-summary").textContent = `${plural(st.failed, "image")} could not be indexed`;
        $("#failure-list").replaceChildren(...failures.map((f) => h("li", {}, h("code", { class: "failure-path" }, f.path), " — ",
          h("span", { class: "failure-reason" }, f.reason))));
        details.hidden = false;
      } else {
        details.hidden = true;
      }

      const folders = st.folders || {};
      const keep = folderSelect.value || readUrl().folder;
      folderSelect.replaceChildren(h("option", { value: "" }, "All folders"),
        ...Object.entries(folders).map(([name, count]) => h("option", { value: name }, `${name || "(top level)"} (${count})`)));
      setFolderValue(keep);
    }

    async function loadStatus() {
      const st = await api(projectApi());
      renderStatus(st);
      const job = st.job;
      if (job && isActive(job.state)) followJob(job);
      else if (job && (job.state === "failed" || job.state === "cancelled")) renderJob(job);
      return st;
    }

    function renderJob(job) {
      showJobState($("#job"), $("#job-state"), job);
      const progress = $("#job-progress");
      const active = isActive(job.state);
      let text = "";
      if (active) {
        text = STAGES[job.stage] || (job.state === "queued" ? "Waiting to start" : "Starting");
        if (job.total) text += ` ${job.done}/${job.total}`;
        if (job.eta_seconds !== null && job.eta_seconds !== undefined && job.stage === "embed") {
          text += ` · about ${formatDuration(job.eta_seconds)} left`;
        }
        if (job.message) text += ` · ${job.message}`;
        if (job.fraction === null || job.fraction === undefined) progress.removeAttribute("value");
        else progress.value = job.fraction;
      } else if (job.state === "done" && job.kind === "tag") {
        const r = job.result || {};
        const took = job.finished_at && job.started_at ? formatDuration(job.finished_at - job.started_at) : "";
        text = `Tagged with ${r.model || "?"}: ${r.tagged || 0} new, ${r.unchanged || 0} unchanged, ` +
          `${r.objects || 0} objects, ${(r.failed || []).length} failed${took ? ` in ${took}` : ""}`;
        progress.value = 1;
      } else if (job.state === "done") {
        const r = job.result || {};
        const took = job.finished_at && job.started_at ? formatDuration(job.finished_at - job.started_at) : "";
        text = `Indexed with ${r.model || "?"}: ${r.embedded || 0} new, ${r.unchanged || 0} unchanged, ` +
          `${r.removed || 0} removed, ${(r.failed || []).length} failed${took ? ` in ${took}` : ""}`;
        progress.value = 1;
      } else if (job.state === "cancelled") {
        text = job.message || "Cancelled; the next run carries on where this one stopped.";
        progress.value = job.fraction || 0;
      } else if (job.state === "failed") {
        text = (job.error && job.error.message) || (job.kind === "tag" ? "the tagging failed" : "the indexing failed");
        progress.value = job.fraction || 0;
      }
      progress.hidden = !active;
      $("#job-text").textContent = text;
      $("#job-cancel").hidden = !active;
      $("#index-button").disabled = active;
      $("#tag-button").disabled = active;
    }

    function followJob(job) {
      renderJob(job);
      if (polling) clearTimeout(polling);
      const tick = async () => {
        polling = null;
        let fresh;
        try {
          fresh = await fetchJob(job.id);
        } catch (err) {
          showError(err, "following the job");
          $("#index-button").disabled = false;
          $("#tag-button").disabled = false;
          return;
        }
        renderJob(fresh);
        if (isActive(fresh.state)) {
          polling = setTimeout(tick, POLL_MS);
          return;
        }
        if (fresh.state === "failed") {
          showError(new ApiError(fresh.error.message, fresh.error.hint),
            fresh.kind === "tag" ? "tagging failed" : "indexing failed");
        }
        try {
          await loadStatus();
          await loadTags();
          if (!upload) await runFromUrl(); // the catalogue changed, even when cancelled
        } catch (err) {
          showError(err);
        }
      };
      polling = setTimeout(tick, POLL_MS);
    }

    $("#index-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      const fd = new FormData();
      const model = $("#index-model").value;
      if (model) fd.append("model", model);
      const button = $("#index-button");
      button.disabled = true;
      try {
        followJob(await api(projectApi("/index"), { method: "POST", body: fd }));
      } catch (err) {
        button.disabled = false;
        showError(err, "cannot start indexing");
      }
    });

    $("#job-cancel").addEventListener("click", async () => {
      const id = $("#job").dataset.jobId;
      if (!id) return;
      try {
        renderJob(await cancelJob(id));
      } catch (err) {
        showError(err, "cannot cancel");
      }
    });

    async function loadModels() {
      const models = await api(apiUrl("/models"));
      const select = $("#index-model");
      for (const m of models.filter((x) => x.task === "embedding")) {
        select.append(h("option", {
          value: m.name, disabled: !m.available, title: m.available ? m.summary : m.availability_detail,
        }, m.available ? m.name : `${m.name} (not available offline)`));
      }
    }

    // ------------------------------------------------------------ start
    loadStatus().catch(report("project status"));
    loadOntology().catch(report("ontology"));
    loadTags().catch(report("tags"));
    // The model list comes after the first query: describing models imports the model libraries,
    // and the server should not import them in two threads at once.
    runFromUrl().finally(() => loadModels().catch(report("models")));
  }

  projectPageMain();
})();
