/* perftune report: draws the plots from the JSON blob and makes tables sortable. No requests. */
(function () {
  "use strict";

  function drawFigures() {
    var blob = document.getElementById("perftune-figures");
    if (!blob || typeof Plotly === "undefined") { return; }
    var figures = JSON.parse(blob.textContent || "{}");
    var config = { responsive: true, displaylogo: false, showLink: false, showSendToCloud: false,
                   showEditInChartStudio: false, typesetMath: false,
                   modeBarButtonsToRemove: ["sendDataToCloud", "lasso2d", "select2d"] };
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      var fig = figures[el.getAttribute("data-figure")];
      if (fig) { Plotly.newPlot(el, fig.data || [], fig.layout || {}, config); }
    });
  }

  function cellValue(row, index) {
    var cell = row.children[index];
    if (!cell) { return ""; }
    var raw = cell.getAttribute("data-value");
    if (raw !== null && raw !== "" && !isNaN(Number(raw))) { return Number(raw); }
    return (cell.textContent || "").trim().toLowerCase();
  }

  function makeSortable(table) {
    var headers = table.querySelectorAll("thead th[data-sort]");
    headers.forEach(function (th, index) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        if (!body) { return; }
        var dir = th.getAttribute("data-dir") === "desc" ? "asc" : "desc";
        headers.forEach(function (other) { other.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir);
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var order = (typeof x === "number" && typeof y === "number") ? x - y
                    : String(x).localeCompare(String(y));
          return dir === "asc" ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  function openTarget() {
    // Links to a rule's docs land on a closed <details>; open it.
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  window.addEventListener("hashchange", openTarget);
  openTarget();
  drawFigures();
})();
