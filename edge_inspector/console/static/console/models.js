// Model comparison chart (Chart.js, vendored): one bar per model for the selected metric.
(function () {
  "use strict";
  const dataEl = document.getElementById("chart-data");
  if (!dataEl || typeof Chart === "undefined") return;
  const data = JSON.parse(dataEl.textContent);
  const select = document.getElementById("metric-select");
  const chart = new Chart(document.getElementById("metrics-chart"), {
    type: "bar",
    data: {labels: data.labels, datasets: [{label: select.value, data: data.metrics[select.value]}]},
    options: {responsive: true, plugins: {legend: {display: true}}, scales: {y: {beginAtZero: true}}},
  });
  select.addEventListener("change", function () {
    chart.data.datasets[0].label = select.value;
    chart.data.datasets[0].data = data.metrics[select.value];
    chart.update();
  });
})();
