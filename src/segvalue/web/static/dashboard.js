// segvalue dashboard: draws the server-built Plotly figures and sorts tables. No framework.
(function () {
  "use strict";

  function drawCharts() {
    if (typeof Plotly === "undefined") return;
    document.querySelectorAll(".chart[data-figure]").forEach(function (element) {
      var source = document.getElementById(element.dataset.figure);
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      Plotly.newPlot(element, figure.data, figure.layout, {
        responsive: true,
        displaylogo: false,
        // On a phone the tool bar would cover the chart: hover and tap still work.
        displayModeBar: window.matchMedia("(min-width: 640px)").matches ? "hover" : false,
      });
    });
  }

  function cellValue(row, index, kind) {
    var cell = row.children[index];
    var raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    if (kind === "number") {
      var number = parseFloat(raw);
      return isNaN(number) ? null : number;
    }
    return raw.toLowerCase();
  }

  function sortTable(table, header, kind) {
    var index = Array.prototype.indexOf.call(header.parentNode.children, header);
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, kind);
      var y = cellValue(b, index, kind);
      // Missing values last, whichever the direction.
      if (x === null || x === "") return y === null || y === "" ? 0 : 1;
      if (y === null || y === "") return -1;
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    table.querySelectorAll("th[aria-sort]").forEach(function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function enableSorting() {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("th button[data-sort]").forEach(function (button) {
        button.addEventListener("click", function () {
          sortTable(table, button.parentNode, button.dataset.sort);
        });
      });
    });
  }

  drawCharts();
  enableSorting();
})();
