// hambench leaderboard: sortable tables, no dependencies.
// Click a header to sort by that column; the first click uses the column's better direction
// (data-better="lower" → ascending, "higher" → descending), a second click reverses it.
// Empty cells (no value) always sort last.
(function () {
  "use strict";

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
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
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

  function init() {
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
        var button = th.querySelector("button") || th;
        button.addEventListener("click", function () { sortTable(table, th); });
      });
      table.setAttribute("data-sortable-ready", "1");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
