// The record lists without page reloads for small things; every form works without this file.
(function () {
  "use strict";
  var filters = document.getElementById("list-filters");
  if (filters) {
    var opsByKind = JSON.parse(filters.getAttribute("data-ops") || "{}");
    var limitOps = function (row) {
      var field = row.querySelector("[data-filter-field]");
      var op = row.querySelector("[data-filter-op]");
      var chosen = field.options[field.selectedIndex];
      var allowed = chosen && chosen.getAttribute("data-kind") ? opsByKind[chosen.getAttribute("data-kind")] : null;
      Array.prototype.forEach.call(op.options, function (o) {
        o.hidden = !!(o.value && allowed && allowed.indexOf(o.value) < 0);
      });
      if (op.selectedOptions[0] && op.selectedOptions[0].hidden) { op.value = allowed ? allowed[0] : ""; }
      if (!op.value && allowed) { op.value = allowed[0]; }
    };
    var rows = function () { return filters.querySelectorAll(".filter-row"); };
    Array.prototype.forEach.call(rows(), function (row) {
      row.querySelector("[data-filter-field]").addEventListener("change", function () { limitOps(row); });
      if (row.querySelector("[data-filter-field]").value) { limitOps(row); }
    });
    var add = filters.querySelector("[data-add-filter]");
    if (add) {
      add.hidden = false;
      add.addEventListener("click", function () {
        var all = rows();
        var last = all[all.length - 1];
        var copy = last.cloneNode(true);
        copy.querySelectorAll("select, input").forEach(function (el) { el.value = ""; });
        var remove = copy.querySelector(".remove-filter");
        if (remove) { remove.remove(); }
        copy.querySelector("[data-filter-field]").addEventListener("change", function () { limitOps(copy); });
        last.parentNode.insertBefore(copy, last.nextSibling);
        copy.querySelector("select").focus();
      });
    }
  }
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  var all = document.querySelector("[data-select-all]");
  if (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      document.querySelectorAll("#bulk-form input[name=ids]").forEach(function (box) { box.checked = all.checked; });
    });
  }
  // the bulk actions stay out of the way (a long block on a phone) until a record is selected
  var bulkBar = document.querySelector(".bulk-bar");
  var boxes = document.querySelectorAll("#bulk-form input[name=ids]");
  if (bulkBar && boxes.length) {
    var showBar = function () {
      bulkBar.hidden = !Array.prototype.some.call(boxes, function (box) { return box.checked; });
    };
    boxes.forEach(function (box) { box.addEventListener("change", showBar); });
    if (all) { all.addEventListener("change", showBar); }
    showBar();
  }
  var bulkField = document.querySelector("[data-bulk-field]");
  var bulkValue = document.getElementById("bulk-value");
  if (bulkField && bulkValue) {
    // a field with choices gets a select of them instead of free text
    var swap = function () {
      var chosen = bulkField.options[bulkField.selectedIndex];
      var choices = JSON.parse(chosen.getAttribute("data-choices") || "[]");
      var kind = chosen.getAttribute("data-kind");
      if (kind === "bool") { choices = ["true", "false"]; }
      var current = document.getElementById("bulk-value");
      var next;
      if (choices.length) {
        next = document.createElement("select");
        choices.forEach(function (c) { var o = document.createElement("option"); o.value = c; o.textContent = c; next.appendChild(o); });
      } else {
        next = document.createElement("input");
        next.type = kind === "date" ? "date" : "text";
        next.placeholder = bulkValue.placeholder;
      }
      next.name = "value";
      next.id = "bulk-value";
      next.setAttribute("aria-label", bulkValue.getAttribute("aria-label"));
      current.replaceWith(next);
    };
    bulkField.addEventListener("change", swap);
    swap();
  }
})();
