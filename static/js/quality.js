// The quality dashboard's charts (Chart.js, vendored): trends over time, sources compared,
// the review backlog. Data comes from /quality/data.json; no inline script (CSP).
(function () {
  "use strict";

  function lineChart(canvas, labels, datasets, percent) {
    return new window.Chart(canvas, {
      type: "line",
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false,
        scales: { y: percent ? { min: 0, max: 100, ticks: { callback: function (v) { return v + " %"; } } } : { beginAtZero: true } },
      },
    });
  }

  function draw(data) {
    var trendCanvas = document.getElementById("chart-trend");
    var days = {};
    Object.keys(data.trend).forEach(function (key) { Object.keys(data.trend[key]).forEach(function (d) { days[d] = true; }); });
    var labels = Object.keys(days).sort();
    var trend = Object.keys(data.trend).sort().map(function (key) {
      return {
        label: key.replace(":", " · "),
        data: labels.map(function (d) { var v = data.trend[key][d]; return v === undefined || v === null ? null : Math.round(v * 1000) / 10; }),
        spanGaps: true,
      };
    });
    lineChart(trendCanvas, labels, trend, true);

    var sources = Object.keys(data.sources).sort();
    // Legend labels come translated from the template's data attributes.
    var sourcesCanvas = document.getElementById("chart-sources");
    new window.Chart(sourcesCanvas, {
      type: "bar",
      data: {
        labels: sources,
        datasets: ["completeness", "validity"].map(function (metric) {
          return { label: sourcesCanvas.dataset[metric] || metric, data: sources.map(function (s) { var v = data.sources[s][metric]; return v == null ? null : Math.round(v * 1000) / 10; }) };
        }),
      },
      options: { animation: false, scales: { y: { min: 0, max: 100 } } },
    });

    var backlogDays = Object.keys(data.backlog).sort();
    var backlogCanvas = document.getElementById("chart-backlog");
    lineChart(backlogCanvas, backlogDays,
      [{ label: backlogCanvas.dataset.label || "pending", data: backlogDays.map(function (d) { return data.backlog[d]; }) }], false);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var canvas = document.getElementById("chart-trend");
    if (!canvas || !window.Chart) { return; }
    fetch(canvas.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(draw);
  });
})();
