/* vitrine web UI, shared helpers: loaded by base.html before the page scripts (app.js, classify.js,
 * detect.js), which take what they need from `window.vitrine`.
 *
 * URLs are built from the prefix the server gave in <body data-base>, so every page works behind a
 * reverse proxy that serves it under a path (e.g. /proxy/8000). Data from the API is put in the
 * page with textContent or attributes, never parsed as HTML.
 */
window.vitrine = (() => {
  "use strict";

  const body = document.body;
  const BASE = (body.dataset.base || "").replace(/\/+$/, "");
  const PAGE = body.dataset.page || "";

  // ---------------------------------------------------------------------------- URLs
  const enc = encodeURIComponent;
  const encPath = (path) => String(path).split("/").map(enc).join("/");
  const apiUrl = (rest) => `${BASE}/api/v1${rest}`;

  // ---------------------------------------------------------------------------- DOM helpers
  const $ = (selector, root = document) => root.querySelector(selector);

  /** Make an element. attrs: properties/attributes; children: nodes or strings (as text). */
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const isNum = (x) => typeof x === "number" && isFinite(x);
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + "s"}`;
  const basename = (path) => String(path || "").split(/[\\/]/).pop();

  /** A size in bytes for people: "512 bytes", "1.5 KB", "20 MB" (1024-based). */
  function formatBytes(n) {
    if (n === null || n === undefined || !isFinite(Number(n))) return "";
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return i === 0 ? `${Math.round(v)} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  /** A duration for people: "under 0.1 s", "2.5 s", "3 min 04 s", "1 h 05 min". */
  function formatDuration(seconds) {
    if (!isNum(seconds)) return "";
    if (seconds < 0.1) return "under 0.1 s";
    if (seconds < 10) return `${Math.round(seconds * 10) / 10} s`;
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  /** Inline facts separated by dots. */
  function dotted(items) {
    const out = [];
    items.filter(Boolean).forEach((item, i) => {
      if (i) out.push(h("span", { class: "dot", "aria-hidden": "true" }, "·"));
      out.push(item);
    });
    return out;
  }

  // ---------------------------------------------------------------------------- API and errors
  class ApiError extends Error {
    constructor(message, hint, status, code) {
      super(message);
      this.hint = hint || null;
      this.status = status;
      this.code = code || null;
    }
  }

  /** fetch() that answers the parsed JSON body, and throws an ApiError carrying the server's
   * {error: {message, hint, code}} (or the status line) when the answer is not ok. */
  async function api(url, options) {
    let res;
    try {
      res = await fetch(url, options);
    } catch (err) {
      throw new ApiError(`cannot reach the vitrine server (${err.message})`,
        "check that the server is still running and reload the page", 0, "network");
    }
    const type = res.headers.get("content-type") || "";
    let data = null;
    let text = "";
    if (type.includes("json")) {
      try { data = await res.json(); } catch (err) { text = `unreadable JSON (${err.message})`; }
    } else {
      text = await res.text();
    }
    if (!res.ok) {
      const e = (data && data.error) || {};
      const message = e.message || `${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`;
      throw new ApiError(message, e.hint, res.status, e.code);
    }
    return data;
  }

  function showError(err, context) {
    const box = $("#error");
    const message = (err && err.message) || String(err);
    if (!box) { window.alert(message); return; }
    $(".error-message", box).textContent = context ? `${context}: ${message}` : message;
    const hint = $(".error-hint", box);
    hint.textContent = err && err.hint ? `Hint: ${err.hint}` : "";
    hint.hidden = !(err && err.hint);
    box.hidden = false;
    if (window.console) console.error(context || "vitrine", err);
  }

  function clearError() {
    const box = $("#error");
    if (box) box.hidden = true;
  }

  /** A .catch() handler that shows the error with what was being done. */
  const report = (context) => (err) => showError(err, context);

  // Nothing fails silently: anything not caught elsewhere ends up in the error box.
  window.addEventListener("unhandledrejection", (event) => showError(event.reason));
  window.addEventListener("error", (event) => {
    if (event.error) showError(event.error, "unexpected error in the page");
  });

  function wireErrorBox() {
    const close = $("#error .error-close");
    if (close) close.addEventListener("click", clearError);
  }
  wireErrorBox();

  return {
    BASE, PAGE, enc, encPath, apiUrl, $, h, isNum, plural, basename, dotted, formatBytes, formatDuration,
    ApiError, api, showError, clearError, report,
  };
})();
