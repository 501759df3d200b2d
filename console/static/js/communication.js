// Communication pages: preview tabs and confirmations. No inline scripts (CSP); htmx does the rest.
(function () {
  "use strict";

  // Preview tabs: <button class="tab" data-tab="panel-id"> switches the sibling .tab-panel elements.
  document.addEventListener("click", function (evt) {
    var tab = evt.target.closest && evt.target.closest("[data-tab]");
    if (!tab) return;
    var root = tab.closest("#preview") || document;
    root.querySelectorAll("[data-tab]").forEach(function (other) {
      other.classList.toggle("active", other === tab);
      var panel = document.getElementById(other.getAttribute("data-tab"));
      if (panel) panel.hidden = other !== tab;
    });
  });

  // <form data-confirm="Question?"> asks before submitting.
  document.addEventListener("submit", function (evt) {
    var question = evt.target.getAttribute && evt.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) evt.preventDefault();
  });
})();
