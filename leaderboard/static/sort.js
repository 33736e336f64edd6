// hambench leaderboard: sortable tables and the "all columns" toggle, no dependencies.
// Click a header to sort by that column; the first click uses the column's better direction
// (data-better="lower" or none → ascending, "higher" → descending), a second click reverses it.
// Empty cells (no value) always sort last. The header row is the last row of <thead> (a group row may sit
// above it). A section's "All N columns" button shows the columns beyond the headline ones (data-extra).
(function () {
  "use strict";

  function headerRow(table) {
    var rows = table.tHead.rows;
    return rows[rows.length - 1];
  }

  function cellValue(row, index, type) {
    var raw = row.cells[index].getAttribute("data-sort");
    if (raw === null || raw === "") return null;
    if (type === "number") {
      var v = parseFloat(raw);
      return isNaN(v) ? null : v;
    }
    return raw.toLowerCase();
  }

  function sortTable(table, th) {
    var headers = Array.prototype.slice.call(headerRow(table).cells);
    var index = headers.indexOf(th);
    var type = th.getAttribute("data-type") || "number";
    var current = th.getAttribute("aria-sort");
    var ascending;
    if (current === "ascending") ascending = false;
    else if (current === "descending") ascending = true;
    else ascending = th.getAttribute("data-better") !== "higher";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._pos = i; });  // stable for equal values
    rows.sort(function (a, b) {
      var va = cellValue(a, index, type), vb = cellValue(b, index, type);
      if (va === null && vb === null) return a._pos - b._pos;
      if (va === null) return 1;
      if (vb === null) return -1;
      if (va < vb) return ascending ? -1 : 1;
      if (va > vb) return ascending ? 1 : -1;
      return a._pos - b._pos;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function initToggle(button) {
    var section = button.closest("section");
    button.addEventListener("click", function () {
      var all = !section.classList.contains("show-all");
      section.classList.toggle("show-all", all);
      button.setAttribute("aria-expanded", all ? "true" : "false");
      button.textContent = button.getAttribute(all ? "data-less" : "data-more");
    });
  }

  function init() {
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, function (table) {
      Array.prototype.forEach.call(headerRow(table).cells, function (th) {
        if (th.getAttribute("data-type") === "none") return;
        var button = th.querySelector("button") || th;
        button.addEventListener("click", function () { sortTable(table, th); });
      });
      table.setAttribute("data-sortable-ready", "1");
    });
    Array.prototype.forEach.call(document.querySelectorAll("button.more-toggle"), initToggle);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
