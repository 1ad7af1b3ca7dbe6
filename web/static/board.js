// The pipeline board: drag a card to another column to move the deal (HTML5 drag and drop).
// Without this script each card's Move form does the same; with it, that form still works and
// asks for a loss reason when the chosen stage is a lost one. After a move the board is fetched
// again, so counts and totals come from the server, never from arithmetic here.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function board() { return document.querySelector("[data-board]"); }

  function csrfToken() {
    var field = document.querySelector("input[name=csrf_token]");
    return field ? field.value : "";
  }

  function askLossReason() {
    var answer = window.prompt(board().getAttribute("data-loss-prompt") || "Loss reason");
    return answer === null ? null : answer.trim();
  }

  function refresh() {
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (resp) { return resp.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["[data-board]", "[data-weighted]"].forEach(function (selector) {
          var fresh = doc.querySelector(selector);
          var current = document.querySelector(selector);
          if (fresh && current) { current.innerHTML = fresh.innerHTML; }
        });
        bind();
      });
  }

  function move(dealId, stageId, lossReason) {
    var body = new FormData();
    body.append("csrf_token", csrfToken());
    body.append("stage_id", stageId);
    if (lossReason) { body.append("loss_reason", lossReason); }
    var slug = board().getAttribute("data-slug");
    return fetch("/t/" + slug + "/deals/" + dealId + "/move", {
      method: "POST", body: body, credentials: "same-origin", headers: { "X-Requested-With": "board" }
    }).then(function (resp) {
      return resp.json().then(function (data) {
        if (!resp.ok) {
          window.alert((data.error && data.error.message) || board().getAttribute("data-move-failed"));
        }
        return refresh();
      });
    });
  }

  function bind() {
    var root = board();
    if (!root) { return; }
    root.querySelectorAll(".deal-card[draggable=true]").forEach(function (card) {
      card.addEventListener("dragstart", function (event) {
        event.dataTransfer.setData("text/plain", card.getAttribute("data-deal-id"));
        event.dataTransfer.effectAllowed = "move";
        card.classList.add("dragging");
      });
      card.addEventListener("dragend", function () { card.classList.remove("dragging"); });
    });
    root.querySelectorAll(".board-column").forEach(function (column) {
      column.addEventListener("dragover", function (event) {
        event.preventDefault();
        event.dataTransfer.dropEffect = "move";
        column.classList.add("drop-target");
      });
      column.addEventListener("dragleave", function (event) {
        if (!column.contains(event.relatedTarget)) { column.classList.remove("drop-target"); }
      });
      column.addEventListener("drop", function (event) {
        event.preventDefault();
        column.classList.remove("drop-target");
        var dealId = event.dataTransfer.getData("text/plain");
        var card = root.querySelector('.deal-card[data-deal-id="' + dealId + '"]');
        if (!dealId || !card || column.contains(card)) { return; }
        var reason = "";
        if (column.getAttribute("data-stage-kind") === "lost") {
          reason = askLossReason();
          if (!reason) { return; }
        }
        column.querySelector(".cards").appendChild(card);  // at once; the refresh confirms it
        move(dealId, column.getAttribute("data-stage-id"), reason);
      });
    });
    root.querySelectorAll("form.move-form").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var select = form.querySelector("select[name=stage_id]");
        var option = select.options[select.selectedIndex];
        var reasonField = form.querySelector("input[name=loss_reason]");
        if (option.getAttribute("data-kind") === "lost" && !reasonField.value.trim()) {
          var reason = askLossReason();
          if (!reason) { event.preventDefault(); return; }
          reasonField.value = reason;
        }
      });
    });
  }

  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  bind();
}());
