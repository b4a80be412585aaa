/* vitrine web UI, an image's page (/p/{name}/image/{path}): the image, its details (size, hash,
 * duplicates) and "more like this". Helpers come from common.js.
 */
(() => {
  "use strict";

  const {
    $, enc, encPath, h, formatBytes, projectApi, projectPage, imagePage, thumbUrl, fillGrid, api, showError,
  } = window.vitrine;
  const body = document.body;

  // ============================================================================ image page
  function imagePageMain() {
    const path = body.dataset.path || "";
    const main = $("#main-image");
    let fellBack = false;
    main.addEventListener("error", () => {
      // Browsers cannot show every format an archive holds (TIFF...): fall back to a large JPEG preview.
      if (fellBack) return;
      fellBack = true;
      main.src = thumbUrl(path, 1024);
    });

    function row(label, value, id) {
      return [h("dt", {}, label), h("dd", id ? { id } : {}, value)];
    }

    async function loadMeta() {
      const dl = $("#meta");
      try {
        const m = await api(projectApi(`/meta/${encPath(path)}`));
        const items = [
          ...row("Path", h("code", {}, m.relpath || path), "meta-path"),
          ...row("Folder", m.folder ? h("a", { href: projectPage(`?folder=${enc(m.folder)}`) }, m.folder) : "(top level)", "meta-folder"),
          ...row("File size", formatBytes(m.size), "meta-size"),
          ...row("Dimensions", m.width && m.height ? `${m.width} × ${m.height} px` : "unknown", "meta-dims"),
        ];
        if (m.format) items.push(...row("Format", m.format, "meta-format"));
        items.push(...row("SHA-256", h("code", { class: "hash" }, m.sha256 || ""), "meta-sha256"));
        const dups = m.duplicates || [];
        items.push(...row("Duplicates", dups.length
          ? h("ul", { class: "dup-list" }, dups.map((d) => h("li", {}, h("a", { href: imagePage(d) }, d))))
          : h("span", { class: "muted" }, "none"), "meta-duplicates"));
        if (m.error) items.push(...row("Problem", h("span", { class: "text-warn" }, m.error), "meta-error"));
        dl.replaceChildren(...items);
      } catch (err) {
        dl.replaceChildren();
        showError(err, "image details");
      } finally {
        dl.setAttribute("aria-busy", "false");
      }
    }

    async function loadSimilar() {
      const list = $("#similar-results");
      const params = new URLSearchParams({ similar: path, k: "12" });
      try {
        const result = await api(projectApi(`/search?${params}`));
        const hits = result.hits.filter((hit) => hit.path !== path);
        fillGrid(list, hits);
        $("#no-similar").hidden = hits.length > 0;
        $("#similar-meta").textContent = `model ${result.model}`;
      } catch (err) {
        showError(err, "more like this");
      }
    }

    loadMeta();
    loadSimilar();
  }

  imagePageMain();
})();
