// Engagement pages: keep the "start a campaign" box honest about what is selected.
(function () {
  "use strict";

  function updateSelection() {
    var form = document.getElementById("campaign-form");
    if (!form) return;
    var picked = document.querySelectorAll('input[type=checkbox][name="user_ids"]:checked').length;
    var button = document.getElementById("campaign-preview-btn");
    if (button) button.textContent = picked ? "Preview counts for " + picked + " selected" : "Preview counts";
    var preview = document.getElementById("campaign-preview");
    if (preview) preview.innerHTML = "";  // a preview for another selection would mislead
  }

  document.addEventListener("change", function (evt) {
    if (evt.target && evt.target.type === "checkbox" && evt.target.closest && evt.target.closest("table")) updateSelection();
  });
  document.addEventListener("htmx:afterSettle", updateSelection);
})();
