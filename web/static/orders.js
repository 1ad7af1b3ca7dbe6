// The order form: add and remove line rows and show live totals. The arithmetic repeats
// kith.tenants.sales.pricing exactly, in integers (BigInt), never floats: quantities have 3
// decimals, prices and discount percentages 2; each line total is rounded half up to cents.
// The server recomputes everything on save; without this script the form still works.
(function () {
  "use strict";
  var form = document.querySelector("[data-order-form]");
  if (!form) return;
  var lines = form.querySelector("[data-lines]");
  var template = form.querySelector("template[data-line-template]");
  var addButton = form.querySelector("[data-add-line]");

  // "12.5" with at most `places` decimals -> 1250n (for places=2); null if not such a number
  function scaled(text, places) {
    text = (text || "").trim();
    var match = /^(\d+)(?:\.(\d+))?$/.exec(text);
    if (!match || (match[2] || "").length > places) return null;
    var fraction = (match[2] || "").padEnd(places, "0");
    return BigInt(match[1] + fraction);
  }
  function roundHalfUp(value, divisor) {  // value >= 0
    return (value + divisor / 2n) / divisor;
  }
  function cents(value) {
    var text = value.toString().padStart(3, "0");
    var whole = text.slice(0, -2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return whole + "." + text.slice(-2);
  }
  function currency() {
    var input = form.querySelector("[data-order-currency]");
    return input ? input.value.trim().toUpperCase() : "";
  }
  function productOf(row) {
    var select = row.querySelector("[data-product]");
    return select && select.value ? select.options[select.selectedIndex] : null;
  }
  // a line's [gross, total] in cents, or null when it is empty or not a valid line yet
  function amounts(row) {
    var product = productOf(row);
    var priceInput = row.querySelector("[data-unit-price]");
    var quantity = scaled(row.querySelector("[data-quantity]").value, 3);
    var priceText = priceInput.value.trim() || (product ? product.dataset.price : "");
    var price = scaled(priceText, 2);
    var discountText = row.querySelector("[data-discount]").value.trim() || "0";
    var discount = scaled(discountText, 2);
    if (quantity === null || quantity === 0n || price === null || discount === null || discount > 10000n) return null;
    var raw = quantity * price;  // 10^-5
    return [roundHalfUp(raw, 1000n), roundHalfUp(raw * (10000n - discount), 10000000n)];
  }
  function refresh() {
    var subtotal = 0n, total = 0n, any = false;
    lines.querySelectorAll("[data-line]").forEach(function (row) {
      var product = productOf(row);
      var description = row.querySelector("[data-description]");
      var price = row.querySelector("[data-unit-price]");
      description.placeholder = product ? product.dataset.name || "" : "";
      price.placeholder = product ? product.dataset.price || "" : "";
      var mismatch = product && product.dataset.currency && currency() && product.dataset.currency !== currency();
      row.classList.toggle("currency-mismatch", Boolean(mismatch));
      var out = row.querySelector("[data-line-total]");
      var result = amounts(row);
      out.textContent = result ? cents(result[1]) : "";
      if (result) {
        any = true;
        subtotal += result[0];
        total += result[1];
      }
    });
    var cur = currency();
    form.querySelector("[data-subtotal]").textContent = cents(subtotal) + " " + cur;
    form.querySelector("[data-discount-total]").textContent = cents(subtotal - total) + " " + cur;
    form.querySelector("[data-total]").textContent = cents(total) + " " + cur;
    form.querySelector("[data-totals]").hidden = !any;
    form.querySelector("[data-totals-hint]").hidden = !any;
  }
  function nextIndex() {
    var highest = -1;
    lines.querySelectorAll("[name^='lines-']").forEach(function (input) {
      var n = parseInt(input.name.split("-")[1], 10);
      if (n > highest) highest = n;
    });
    return highest + 1;
  }
  function showRemoveButtons() {
    lines.querySelectorAll("[data-remove-line]").forEach(function (button) { button.hidden = false; });
  }
  if (template && addButton) {
    addButton.hidden = false;
    addButton.addEventListener("click", function () {
      var html = template.innerHTML.replace(/__i__/g, String(nextIndex()));
      lines.insertAdjacentHTML("beforeend", html);
      showRemoveButtons();
      var added = lines.lastElementChild.querySelector("select, input");
      if (added) added.focus();
      refresh();
    });
  }
  lines.addEventListener("click", function (event) {
    var button = event.target.closest("[data-remove-line]");
    if (!button) return;
    button.closest("[data-line]").remove();
    refresh();
  });
  form.addEventListener("input", refresh);
  form.addEventListener("change", refresh);
  showRemoveButtons();
  refresh();
})();
