/* The leaderboard page's board card: the dataset's hidden test split and group board (set by its
 * owner), and submissions: download the hidden split's images by id, upload predictions (a CSV of
 * image,class, COCO results) or a detector (.onnx), see the score or every problem with its line.
 * Everything comes from /api/v1/datasets/{name}/board, /submission and /submissions. */
(() => {
  "use strict";
  const V = window.vitrine;
  const { $, h, datasetApi, api, plural, isNum, enc } = V;
  const card = $("#board-card");
  if (!card) return;
  const name = document.body.dataset.dataset || "";
  const state = { board: null, listing: null };

  function scoreText(row) {
    const metric = row.task === "detect" ? "box mAP@.5" : "accuracy";
    return isNum(row.primary) ? `${metric} ${V.decimal(row.primary, 4)}` : "not scored";
  }

  function showBoard(board) {
    state.board = board;
    const hidden = board.hidden.length ? `The ${board.hidden.join(" and ")} split is hidden from members` : "No split is hidden";
    $("#board-state").textContent =
      `${hidden}${board.group ? "; this is the group's board: everyone who can read the dataset sees every run on it" : ""}.`;
    const settings = $("#board-settings");
    settings.hidden = !board.sees_hidden;
    $("#hide-test").checked = board.hidden.includes("test");
    $("#group-board").checked = board.group;
  }

  function showListing(listing) {
    state.listing = listing;
    const what = listing.task === "detect"
      ? "COCO results (a JSON array or JSON Lines of image_id, category_id or category_name, bbox [x, y, w, h], score), or a detector exported to ONNX"
      : `a CSV with the header image,class and one row per image; classes: ${listing.classes.join(", ")}`;
    $("#submit-count").textContent = plural(listing.images.length, "image");
    $("#submit-format").textContent = what;
    $("#submit-zip").href = datasetApi(name, `/submission/images.zip?split=${enc(listing.split)}`);
    $("#submit-ids").href = datasetApi(name, `/submission?split=${enc(listing.split)}`);
    $("#submit-file").accept = listing.task === "detect" ? ".json,.jsonl,.onnx" : ".csv,.txt";
  }

  function showSubmissions(rows) {
    const body = $("#submissions-body");
    body.replaceChildren(...rows.map((row) => h("tr", { "data-run": row.id },
      h("td", {}, row.arch || row.id),
      h("td", { class: "num" }, isNum(row.primary) ? row.primary.toFixed(4) : "-"),
      h("td", {}, row.state || ""),
      h("td", {}, row.created_at ? V.formatWhen(row.created_at) : ""))));
    $("#submissions-none").hidden = rows.length > 0;
    $("#submissions-table").hidden = rows.length === 0;
  }

  function showProblems(err) {
    const list = $("#submit-problems");
    const details = (err && err.details) || [];
    list.replaceChildren(...details.map((d) => h("li", {}, d.message)));
    list.hidden = details.length === 0;
  }

  async function refresh() {
    const rows = await api(datasetApi(name, "/submissions"));
    showSubmissions(rows);
  }

  async function waitForJob(job) {
    const result = $("#submit-result");
    while (V.isActive(job)) {
      result.textContent = `Scoring the model on the server: ${job.message || job.state}`;
      await new Promise((done) => setTimeout(done, 1000));
      job = await V.fetchJob(job.id);
    }
    if (job.state !== "done") throw new V.ApiError((job.error && job.error.message) || `the scoring ${job.state}`);
    return job;
  }

  async function submit(event) {
    event.preventDefault();
    const form = event.target;
    const result = $("#submit-result");
    showProblems(null);
    result.className = "muted";
    result.textContent = "Scoring…";
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      const res = await fetch(datasetApi(name, "/submissions"), { method: "POST", body: new FormData(form) });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) {
        const e = data.error || {};
        const err = new V.ApiError(e.message || `${res.status} ${res.statusText}`, e.hint, res.status, e.code);
        err.details = e.details;
        throw err;
      }
      if (res.status === 202) {
        await waitForJob(data);
        result.textContent = "Scored: the model is on the board.";
      } else {
        result.textContent = `Scored: ${scoreText(data)} on the ${state.listing ? state.listing.split : "test"} split.`;
      }
      result.className = "alert alert-ok";
      form.reset();
      await refresh();
      document.dispatchEvent(new CustomEvent("vitrine:board-changed"));
    } catch (err) {
      result.className = "alert alert-error";
      result.textContent = `Not scored: ${err.details && err.details.length ? `${plural(err.details.length, "problem")} in the file` : err.message}`;
      if (err.hint) result.append(h("span", { class: "muted" }, ` (${err.hint})`));
      showProblems(err);
    } finally {
      button.disabled = false;
    }
  }

  async function saveSettings(event) {
    event.preventDefault();
    const body = { hidden: $("#hide-test").checked ? ["test"] : [], group: $("#group-board").checked };
    try {
      const board = await api(datasetApi(name, "/board"), {
        method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
      });
      showBoard(board);
      $("#board-saved").textContent = "Saved.";
      document.dispatchEvent(new CustomEvent("vitrine:board-changed"));
    } catch (err) {
      V.showError(err, "saving the board");
    }
  }

  async function start() {
    let board;
    try {
      board = await api(datasetApi(name, "/board"));
    } catch (err) {
      if (err.status === 404) return; // a board of runs only (no workspace dataset): nothing to set
      throw err;
    }
    card.hidden = false;
    showBoard(board);
    try {
      showListing(await api(datasetApi(name, "/submission?split=test")));
      $("#submit-box").hidden = false;
    } catch (err) {
      if (err.status !== 404) throw err;
      $("#submit-none").hidden = false; // no test split: nothing to submit for
    }
    await refresh();
  }

  $("#submit-form").addEventListener("submit", (event) => submit(event).catch(V.report("submitting")));
  $("#board-settings").addEventListener("submit", saveSettings);
  start().catch(V.report("loading the board's settings"));
})();
