/* vitrine web UI, the detection page (/detect): pick a model, upload or pick an image, see every
 * object found drawn over it. A client of /api/v1 (GET /detectors, POST /detect and /segment).
 *
 * The detections are fetched once at a low threshold; the threshold slider and the class toggles
 * only redraw (no new request). The overlay (translucent masks, boxes, "label 0.93" tags) is drawn
 * on a <canvas> over the image at the image's own resolution; "Download PNG" composes image and
 * overlay. Every URL comes from window.vitrine (the path prefix the server gave).
 */
(() => {
  "use strict";

  const { BASE, enc, encPath, apiUrl, $, h, plural, basename, api, showError, clearError, report, download } =
    window.vitrine;
  const body = document.body;
  const FETCH_THRESHOLD = 0.05; // one request at this threshold; the slider filters what is drawn
  const DEFAULT_THRESHOLD = 0.5;
  const MASK_ALPHA = 0.45;

  const modelSelect = $("#detect-model");
  const projectSelect = $("#detect-project");
  const imageSelect = $("#detect-image-select");
  const uploadInput = $("#detect-upload");
  const runButton = $("#detect-run");
  const resultBox = $("#detect-result");
  const img = $("#detect-image");
  const canvas = $("#detect-canvas");
  const slider = $("#detect-threshold");

  let models = [];
  let source = null; // {kind: "upload", file} | {kind: "collection", project, path}
  let result = null; // the last answer of the API
  let hiddenClasses = new Set();
  let seq = 0;
  let objectUrl = null;

  // Each detection carries its class colour from the server (vitrine.predict.overlay.class_color), so a
  // class looks the same here, in the PNG the API draws and in the CLI's overlays.
  const FALLBACK = [44, 95, 184];
  const colours = new Map();
  function colourOf(d) {
    if (!colours.has(d.label)) colours.set(d.label, Array.isArray(d.color) && d.color.length >= 3 ? d.color : FALLBACK);
    return colours.get(d.label);
  }
  const rgba = (c, a) => `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${a})`;
  const threshold = () => Number(slider.value);
  const imageName = () => (source ? (source.kind === "upload" ? source.file.name : basename(source.path)) : "image");
  const stem = () => imageName().replace(/\.[^.]+$/, "") || "image";

  // ---------------------------------------------------------------------------- models and images
  function modelOf(name) {
    return models.find((m) => m.name === name) || null;
  }

  function showTask() {
    const m = modelOf(modelSelect.value);
    const badge = $("#detect-model-task");
    badge.hidden = !m;
    if (!m) return;
    badge.textContent = m.task === "segmentation" ? "boxes + masks" : "boxes";
    badge.title = m.summary || m.description || "";
  }

  // The models that cannot run on this server, each with the reason the server gave (weights not
  // installed, a library of the wrong version...): folded away, open when nothing can run.
  function showUnavailable(rows) {
    const box = $("#detect-unavailable");
    box.hidden = !rows.length;
    if (!rows.length) return;
    box.querySelector("summary").textContent = rows.length === models.length
      ? "No detection model can run on this server: why"
      : `${plural(rows.length, "model")} not available on this server: why`;
    box.querySelector("ul").replaceChildren(...rows.map((m) => h("li", {},
      h("code", {}, m.name), " ", m.availability_detail || "not available on this server")));
    box.open = rows.length === models.length;
  }

  async function loadModels() {
    const rows = await api(apiUrl("/detectors"));
    models = Array.isArray(rows) ? rows : rows.detectors || [];
    const wanted = body.dataset.model || new URLSearchParams(window.location.search).get("model") || "";
    const usable = models.filter((m) => m.available !== false);
    modelSelect.replaceChildren(...models.map((m) => {
      const ok = m.available !== false;
      const kind = m.task === "segmentation" ? "segmentation" : "detection";
      const label = `${m.name} (${kind}${m.source === "run" || m.kind === "run" ? ", fine-tuned" : ""})`;
      return h("option", {
        value: m.name, disabled: !ok,
        title: ok ? (m.summary || m.description || "") : (m.availability_detail || "not available on this server"),
      }, ok ? label : `${label}: not available`);
    }));
    if (!models.length) modelSelect.append(h("option", { value: "" }, "No detection model on this server"));
    else if (!usable.length) modelSelect.prepend(h("option", { value: "" }, "No model can run here"));
    showUnavailable(models.filter((m) => m.available === false));
    const pick = modelOf(wanted) && modelOf(wanted).available !== false ? wanted : (usable[0] || {}).name;
    modelSelect.value = pick || "";
    modelSelect.disabled = !usable.length;
    showTask();
    updateRun();
    if (source) run();
  }

  async function loadProjects() {
    const rows = await api(apiUrl("/projects"));
    const names = rows.filter((p) => !p.error).map((p) => p.name);
    projectSelect.replaceChildren(h("option", { value: "" }, names.length ? "Collection…" : "No collection"),
      ...names.map((n) => h("option", { value: n }, n)));
    projectSelect.disabled = !names.length;
    const wanted = body.dataset.project || "";
    if (wanted && names.includes(wanted)) {
      projectSelect.value = wanted;
      await loadImages(wanted);
      const path = new URLSearchParams(window.location.search).get("path");
      if (path && [...imageSelect.options].some((o) => o.value === path)) {
        imageSelect.value = path;
        source = { kind: "collection", project: wanted, path };
        updateRun();
        run();
      }
    }
  }

  async function loadImages(project) {
    imageSelect.disabled = true;
    if (!project) {
      imageSelect.replaceChildren(h("option", { value: "" }, "Pick a collection first"));
      return;
    }
    imageSelect.replaceChildren(h("option", { value: "" }, "Loading the images…"));
    const data = await api(apiUrl(`/projects/${enc(project)}/images?limit=500`));
    const rows = (data.images || []).filter((r) => !r.error);
    imageSelect.replaceChildren(
      h("option", { value: "" }, rows.length ? `Image… (${plural(data.total, "image")})` : "No image catalogued yet"),
      ...rows.map((r) => h("option", { value: r.relpath }, r.relpath)));
    imageSelect.disabled = !rows.length;
  }

  function updateRun() {
    runButton.disabled = !(source && modelSelect.value);
  }

  // ---------------------------------------------------------------------------- running the model
  /** Show the image as large as fits (small images up to twice their size), never distorted: the
   * canvas covers the stage, so it follows. */
  function fitImage() {
    if (!result || !img.naturalWidth) return;
    const aspect = result.width / result.height;
    const room = $(".detect-figure").clientWidth - 26;
    const width = Math.min(room, result.width * 2, window.innerHeight * 0.72 * aspect);
    img.style.width = `${Math.max(120, Math.floor(width))}px`;
  }
  window.addEventListener("resize", fitImage);

  function showImage() {
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
    let fellBack = false;
    img.onload = fitImage;
    img.onerror = () => {
      if (source && source.kind === "collection" && !fellBack) { // a format the browser cannot show: the preview
        fellBack = true;
        img.src = apiUrl(`/projects/${enc(source.project)}/thumbs/${encPath(source.path)}?size=1024`);
      } else {
        $("#detect-stage").classList.add("no-image");
      }
    };
    $("#detect-stage").classList.remove("no-image");
    if (source.kind === "upload") {
      objectUrl = URL.createObjectURL(source.file);
      img.src = objectUrl;
    } else {
      img.src = apiUrl(`/projects/${enc(source.project)}/files/${encPath(source.path)}`);
    }
  }

  async function run() {
    if (!source || !modelSelect.value) return;
    const mine = ++seq;
    const model = modelOf(modelSelect.value);
    const segment = model && model.task === "segmentation";
    clearError();
    const fd = new FormData();
    if (source.kind === "upload") fd.append("file", source.file, source.file.name);
    else { fd.append("project", source.project); fd.append("path", source.path); }
    fd.append("model", modelSelect.value);
    fd.append("threshold", String(FETCH_THRESHOLD));
    if (segment) fd.append("mask_format", "polygon");
    resultBox.setAttribute("aria-busy", "true");
    runButton.disabled = true;
    $("#detect-summary").textContent = "Detecting…";
    try {
      const answer = await api(apiUrl(segment ? "/segment" : "/detect"), { method: "POST", body: fd });
      if (mine !== seq) return;
      result = answer;
      hiddenClasses = new Set();
      colours.clear();
      showImage();
      resultBox.hidden = false;
      $("#detect-caption").textContent = `${imageName()} · ${answer.width} × ${answer.height} px`;
      $("#detect-meta").textContent =
        `${answer.model} · ${answer.task} · ${Math.round((answer.seconds || 0) * 1000)} ms on the server`;
      render();
    } catch (err) {
      if (mine !== seq) return;
      $("#detect-summary").textContent = "";
      showError(err, `detecting with ${modelSelect.value}`);
    } finally {
      if (mine === seq) {
        resultBox.setAttribute("aria-busy", "false");
        updateRun();
      }
    }
  }

  // ---------------------------------------------------------------------------- drawing
  const aboveThreshold = () => (result ? result.detections.filter((d) => d.score >= threshold()) : []);
  const visible = () => aboveThreshold().filter((d) => !hiddenClasses.has(d.label));

  function polygonsOf(mask) {
    // polygons: a list of flat [x1, y1, x2, y2, ...] rings (COCO); also accept {polygons: [...]}
    if (!mask) return [];
    const rings = Array.isArray(mask) ? mask : mask.polygons || mask.segmentation || [];
    return rings.filter((r) => Array.isArray(r) && r.length >= 6);
  }

  function draw() {
    const W = result.width;
    const H = result.height;
    if (canvas.width !== W) canvas.width = W;
    if (canvas.height !== H) canvas.height = H;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, W, H);
    const shown = visible();
    const line = Math.max(3, Math.round(Math.max(W, H) / 250));
    const fontSize = Math.max(12, Math.round(Math.max(W, H) / 45));
    // masks first, boxes and tags on top
    for (const d of shown) {
      const rings = polygonsOf(d.mask);
      if (!rings.length) continue;
      const c = colourOf(d);
      const path = new Path2D();
      for (const ring of rings) {
        path.moveTo(ring[0], ring[1]);
        for (let i = 2; i + 1 < ring.length; i += 2) path.lineTo(ring[i], ring[i + 1]);
        path.closePath();
      }
      ctx.fillStyle = rgba(c, MASK_ALPHA);
      ctx.fill(path, "evenodd");
      ctx.strokeStyle = rgba(c, 0.95);
      ctx.lineWidth = Math.max(1, line / 2);
      ctx.stroke(path);
    }
    ctx.font = `600 ${fontSize}px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif`;
    ctx.textBaseline = "top";
    for (const d of shown) {
      const c = colourOf(d);
      const [x1, y1, x2, y2] = d.box;
      ctx.strokeStyle = rgba(c, 1);
      ctx.lineWidth = line;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const tag = `${d.label} ${d.score.toFixed(2)}`;
      const pad = Math.round(fontSize / 4);
      const tw = ctx.measureText(tag).width + 2 * pad;
      const th = fontSize + 2 * pad;
      const tx = Math.min(Math.max(0, x1 - line / 2), Math.max(0, W - tw));
      const ty = y1 - th >= 0 ? y1 - th : Math.min(y1, H - th); // above the box, else inside it
      ctx.fillStyle = rgba(c, 1);
      ctx.fillRect(tx, ty, tw, th);
      const dark = c[0] * 0.299 + c[1] * 0.587 + c[2] * 0.114 > 150;
      ctx.fillStyle = dark ? "#111" : "#fff";
      ctx.fillText(tag, tx + pad, ty + pad);
    }
    canvas.dataset.drawn = String(shown.length);
    return shown;
  }

  function renderClasses() {
    const counts = new Map();
    for (const d of aboveThreshold()) {
      if (!counts.has(d.label)) counts.set(d.label, { n: 0, d });
      counts.get(d.label).n += 1;
    }
    const list = $("#detect-classes");
    const labels = [...counts.keys()].sort((a, b) => counts.get(b).n - counts.get(a).n || a.localeCompare(b));
    list.replaceChildren(...labels.map((label) => {
      const { n, d } = counts.get(label);
      const c = colourOf(d);
      const input = h("input", {
        type: "checkbox", value: label, dataset: { label },
        onchange: (event) => {
          if (event.currentTarget.checked) hiddenClasses.delete(label); else hiddenClasses.add(label);
          render();
        },
      });
      input.checked = !hiddenClasses.has(label);
      return h("li", {},
        h("label", { class: "class-toggle" }, input,
          h("span", { class: "swatch", style: `background: ${rgba(c, 1)}`, "aria-hidden": "true" }),
          h("span", { class: "class-label" }, label),
          h("span", { class: "class-count muted" }, String(n))));
    }));
    $("#detect-no-classes").hidden = labels.length > 0;
  }

  function renderTable(shown) {
    const rows = shown.map((d, i) => {
      const [x1, y1, x2, y2] = d.box;
      const c = colourOf(d);
      return h("tr", {},
        h("td", { class: "num" }, String(i + 1)),
        h("th", { scope: "row" }, h("span", { class: "swatch", style: `background: ${rgba(c, 1)}`, "aria-hidden": "true" }),
          ` ${d.label}`),
        h("td", { class: "num" }, d.score.toFixed(3)),
        h("td", { class: "nowrap" }, [x1, y1, x2, y2].map((v) => Math.round(v)).join(", ")),
        h("td", { class: "num" }, `${Math.round(x2 - x1)} × ${Math.round(y2 - y1)}`));
    });
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No detection shown.")));
    $("#detect-table tbody").replaceChildren(...rows);
  }

  function render() {
    if (!result) return;
    $("#detect-threshold-value").textContent = threshold().toFixed(2);
    renderClasses();
    const shown = draw();
    renderTable(shown);
    const total = aboveThreshold().length;
    const hidden = total - shown.length;
    $("#detect-summary").textContent = `${plural(shown.length, "object")} shown` +
      (hidden ? ` (${hidden} of ${total} hidden by the class toggles)` : "") +
      ` · score ≥ ${threshold().toFixed(2)}`;
  }

  // ---------------------------------------------------------------------------- downloads

  function downloadPng() {
    if (!result) return;
    const out = document.createElement("canvas");
    out.width = result.width;
    out.height = result.height;
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    if (img.complete && img.naturalWidth) ctx.drawImage(img, 0, 0, out.width, out.height);
    ctx.drawImage(canvas, 0, 0);
    out.toBlob((blob) => {
      if (blob) download(blob, `${stem()}_detections.png`);
      else showError(new Error("the browser could not make the PNG"), "Download PNG");
    }, "image/png");
  }

  function downloadJson() {
    if (!result) return;
    const data = {
      model: result.model, task: result.task, width: result.width, height: result.height,
      image: result.image || { name: imageName() }, threshold: threshold(),
      hidden_classes: [...hiddenClasses], detections: visible(),
    };
    download(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }), `${stem()}_detections.json`);
  }

  // ---------------------------------------------------------------------------- controls
  slider.value = String(DEFAULT_THRESHOLD);
  slider.addEventListener("input", render);
  modelSelect.addEventListener("change", () => {
    showTask();
    updateRun();
    if (source) run();
  });
  uploadInput.addEventListener("change", () => {
    const file = uploadInput.files && uploadInput.files[0];
    if (!file) return;
    uploadInput.value = ""; // the same file chosen again runs again
    source = { kind: "upload", file };
    imageSelect.value = "";
    updateRun();
    run();
  });
  projectSelect.addEventListener("change", () => {
    loadImages(projectSelect.value).catch(report("collection images"));
  });
  imageSelect.addEventListener("change", () => {
    if (!imageSelect.value) return;
    source = { kind: "collection", project: projectSelect.value, path: imageSelect.value };
    updateRun();
    run();
  });
  runButton.addEventListener("click", run);
  $("#detect-download-png").addEventListener("click", downloadPng);
  $("#detect-download-json").addEventListener("click", downloadJson);

  loadModels().catch(report("detection models"));
  loadProjects().catch(report("collections"));
})();
