// The account page: storage against the quota, API tokens (created, shown once, revoked) and the
// sharing of the objects the user owns, through /api/v1/me, /api/v1/tokens and /api/v1/access.
// Unsafe requests carry the session's CSRF header (added by the page's fetch wrapper, base.html).
(() => {
  const { apiUrl, $, h, api, report, clearError, formatWhen } = window.vitrine;
  if (!$("#tokens")) return; // single-user mode: nothing to manage

  const when = (t) => (t ? formatWhen(t) : "—");
  const json = (method, body) => ({
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

  // ------------------------------------------------------------------ storage and owned objects
  let owned = [];

  function showStorage(s) {
    const text = $("#storage-text");
    const bar = $("#storage-bar");
    if (!s) { text.textContent = "not measured"; return; }
    const limit = s.limit_bytes === null ? "(no limit)" : `of ${s.limit}`;
    const source = s.source === "user" ? " (set for you)" : s.source === "server" ? " (server default)" : "";
    text.textContent = `${s.used} used ${limit}${source}`;
    text.classList.toggle("usage-over", Boolean(s.over));
    if (s.over) text.textContent += " — over the quota: new trainings are refused";
    bar.hidden = s.limit_bytes === null;
    if (s.limit_bytes) { bar.max = s.limit_bytes; bar.value = Math.min(s.used_bytes, s.limit_bytes); }
  }

  async function loadMe() {
    const me = await api(apiUrl("/me"));
    showStorage(me.storage);
    owned = me.owned || [];
    const select = $("#share-object");
    const keep = select.value;
    select.replaceChildren(...owned.map((o) => h("option", { value: `${o.kind}/${o.key}` }, `${o.kind}: ${o.key}`)));
    if (keep && owned.some((o) => `${o.kind}/${o.key}` === keep)) select.value = keep;
    $("#share-none").hidden = owned.length > 0;
    $("#share-pick").hidden = owned.length === 0;
    $("#share-details").hidden = owned.length === 0;
    if (owned.length) await loadAccess();
  }

  // ------------------------------------------------------------------ tokens
  async function loadTokens() {
    const tokens = await api(apiUrl("/tokens"));
    const body = $("#token-table tbody");
    body.replaceChildren(...tokens.map((t) => {
      const revoke = t.active
        ? h("button", { type: "button", class: "button small token-revoke", "data-id": String(t.id) }, "Revoke")
        : h("span", { class: "muted" }, t.revoked_at ? "revoked" : "expired");
      return h("tr", { class: t.active ? "token-row" : "token-row token-revoked", "data-id": String(t.id) },
        h("td", { class: "token-name" }, t.name), h("td", {}, h("code", {}, t.prefix)),
        h("td", {}, when(t.created_at)), h("td", {}, t.expires_at ? when(t.expires_at) : "never"),
        h("td", {}, when(t.last_used_at)), h("td", {}, revoke));
    }));
    $("#tokens-empty").hidden = tokens.length > 0;
    $("#token-table").hidden = tokens.length === 0;
  }

  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    const expires = $("#token-expires").value || null;
    api(apiUrl("/tokens"), json("POST", { name: $("#token-name").value.trim(), expires }))
      .then((made) => {
        $("#new-token-secret").textContent = made.token;
        $("#new-token").hidden = false;
        return loadTokens();
      })
      .catch(report("creating the token"));
  });
  $("#new-token-hide").addEventListener("click", () => {
    $("#new-token-secret").textContent = ""; // gone from the page: shown once
    $("#new-token").hidden = true;
  });
  $("#new-token-copy").addEventListener("click", () => {
    const secret = $("#new-token-secret").textContent;
    if (navigator.clipboard) navigator.clipboard.writeText(secret).catch(report("copying the token"));
  });
  $("#token-table").addEventListener("click", (event) => {
    const button = event.target.closest(".token-revoke");
    if (!button) return;
    button.disabled = true;
    api(apiUrl(`/tokens/${button.dataset.id}`), json("DELETE"))
      .then(loadTokens)
      .catch((err) => { button.disabled = false; report("revoking the token")(err); });
  });

  // ------------------------------------------------------------------ sharing
  function chosen() {
    const [kind, ...rest] = $("#share-object").value.split("/");
    return { kind, key: rest.join("/") };
  }
  const accessUrl = ({ kind, key }, tail = "") =>
    apiUrl(`/access/${encodeURIComponent(kind)}/${encodeURIComponent(key)}${tail}`);

  function showAccess(access) {
    $("#share-visibility").value = access.visibility;
    const users = access.shared_with || [];
    $("#share-users").replaceChildren(...(users.length ? users.map((name) => h("span", { class: "share-chip" }, name,
      h("button", { type: "button", class: "icon-button share-remove", "data-user": name,
        "aria-label": `stop sharing with ${name}` }, "×"))) : [h("span", { class: "muted" }, "nobody")]));
  }

  async function loadAccess() {
    showAccess(await api(accessUrl(chosen())));
  }

  $("#share-object").addEventListener("change", () => loadAccess().catch(report("reading the access")));
  $("#visibility-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    api(accessUrl(chosen()), json("PUT", { visibility: $("#share-visibility").value }))
      .then(showAccess).catch(report("changing the visibility"));
  });
  $("#share-add").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    const user = $("#share-user").value.trim();
    api(accessUrl(chosen(), `/shares/${encodeURIComponent(user)}`), json("PUT"))
      .then((access) => { $("#share-user").value = ""; showAccess(access); })
      .catch(report(`sharing with ${user}`));
  });
  $("#share-users").addEventListener("click", (event) => {
    const button = event.target.closest(".share-remove");
    if (!button) return;
    api(accessUrl(chosen(), `/shares/${encodeURIComponent(button.dataset.user)}`), json("DELETE"))
      .then(showAccess).catch(report(`unsharing with ${button.dataset.user}`));
  });

  loadMe().catch(report("reading your account"));
  loadTokens().catch(report("listing your tokens"));
})();
