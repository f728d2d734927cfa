// Access control page behaviour (no inline scripts: the content security policy forbids them).
(function () {
  "use strict";
  // Opening a reveal control focuses its reason box; closing it clears the box.
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!details.classList || !details.classList.contains("reveal")) return;
    var input = details.querySelector("input[name=reason]");
    if (!input) return;
    if (details.open) input.focus(); else input.value = "";
  }, true);
  // The policy matrix marks cells that differ from the role's default.
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.tagName === "SELECT" && select.closest("table.matrix")) {
      select.classList.toggle("overridden", select.value !== "");
    }
  });
})();
