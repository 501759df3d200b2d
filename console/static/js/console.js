// Console behaviour that htmx does not cover: plotly charts, toasts, small helpers.
// No inline scripts anywhere (the CSP forbids them): pages describe, this file acts.
(function () {
  "use strict";

  function renderCharts(root) {
    if (!window.Plotly) return;
    (root || document).querySelectorAll("[data-plotly]").forEach(function (el) {
      var figure;
      try { figure = JSON.parse(el.getAttribute("data-plotly")); } catch (e) { return; }
      var layout = Object.assign({
        margin: { l: 48, r: 16, t: 24, b: 40 },
        paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
        font: { family: "Inter, system-ui, sans-serif", size: 12, color: "#334155" },
        legend: { orientation: "h", y: -0.2 },
        colorway: ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#64748b"],
      }, figure.layout || {});
      window.Plotly.react(el, figure.data || [], layout, { displaylogo: false, responsive: true });
      el.setAttribute("data-rendered", "true");
    });
  }

  function toast(message, tone) {
    var box = document.getElementById("toasts");
    if (!box || !message) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (tone || "success");
    item.setAttribute("role", "status");
    item.textContent = message;
    box.appendChild(item);
    setTimeout(function () { item.classList.add("toast-hide"); }, 3500);
    setTimeout(function () { item.remove(); }, 4200);
  }
  window.consoleToast = toast;

  document.addEventListener("DOMContentLoaded", function () { renderCharts(document); });
  document.addEventListener("htmx:afterSettle", function (evt) { renderCharts(evt.target); });
  // Servers send HX-Trigger: {"toast": {"message": "...", "tone": "success"}}
  document.addEventListener("toast", function (evt) {
    var detail = evt.detail || {};
    toast(detail.message || detail.value, detail.tone);
  });
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr, message = "Request failed (" + xhr.status + ")";
    try { var body = JSON.parse(xhr.responseText); message = body.detail || body.title || message; } catch (e) { /* HTML */ }
    toast(message, "error");
  });
  // Checkbox "select all" for tables: <input type="checkbox" data-select-all="name">
  document.addEventListener("change", function (evt) {
    var name = evt.target.getAttribute && evt.target.getAttribute("data-select-all");
    if (!name) return;
    document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (box) {
      box.checked = evt.target.checked;
    });
  });
})();
