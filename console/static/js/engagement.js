// Engagement pages: keep the "start a campaign" box honest about what is selected.
(function () {
  "use strict";

  function updateButton() {
    var button = document.getElementById("campaign-preview-btn");
    if (!button) return;
    var picked = document.querySelectorAll('input[type=checkbox][name="user_ids"]:checked').length;
    button.textContent = picked ? "Preview counts for " + picked + " selected" : "Preview counts";
  }

  document.addEventListener("change", function (evt) {
    var target = evt.target;
    if (!target || target.type !== "checkbox" || !target.closest || !target.closest("table")) return;
    updateButton();
    var preview = document.getElementById("campaign-preview");
    if (preview) preview.innerHTML = "";  // a preview of another selection would mislead
  });
  document.addEventListener("htmx:afterSettle", updateButton);
})();

// Drill-down: a click on a bar of a chart inside [data-drill] opens the members behind it. The URL carries
// __X__ (the bar's x), __CD__ (its customdata) and __NAME__ (its trace, lower case) as placeholders.
(function () {
  "use strict";

  function bind(root) {
    (root || document).querySelectorAll("[data-drill] [data-plotly]").forEach(function (el) {
      if (el.__drillBound || typeof el.on !== "function") return;
      el.__drillBound = true;
      el.on("plotly_click", function (evt) {
        var point = evt && evt.points && evt.points[0];
        if (!point) return;
        var template = el.parentElement.closest("[data-drill]").getAttribute("data-drill");
        var name = (point.data && point.data.name || "").toLowerCase();
        window.location.href = template.replace("__X__", encodeURIComponent(point.x))
          .replace("__CD__", encodeURIComponent(point.customdata == null ? "" : point.customdata))
          .replace("__NAME__", encodeURIComponent(name));
      });
      el.setAttribute("data-drill-bound", "true");
    });
  }

  function later(root) {  // plotly attaches .on() once a chart has rendered, which may take a moment
    var tries = 0;
    var timer = setInterval(function () {
      bind(root);
      tries += 1;
      var pending = (root || document).querySelectorAll("[data-drill] [data-plotly]:not([data-drill-bound])").length;
      if (!pending || tries > 50) clearInterval(timer);
    }, 100);
  }
  document.addEventListener("DOMContentLoaded", function () { later(document); });
  document.addEventListener("htmx:afterSettle", function (evt) { later(evt.target); });
})();
