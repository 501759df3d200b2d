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
