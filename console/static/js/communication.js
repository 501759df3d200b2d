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

  // Mailbox: the message list keeps the clicked message highlighted (htmx swaps only the reading pane).
  document.addEventListener("click", function (evt) {
    var item = evt.target.closest && evt.target.closest(".mailbox-item");
    if (!item) return;
    document.querySelectorAll(".mailbox-item.active").forEach(function (el) { el.classList.remove("active"); });
    item.classList.add("active");
  });

  // <form data-confirm="Question?"> asks before submitting.
  document.addEventListener("submit", function (evt) {
    var question = evt.target.getAttribute && evt.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) evt.preventDefault();
  });
})();
