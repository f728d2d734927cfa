// Mapping screen: mark rows whose field was changed from the proposal, and warn before
// starting without a key column. No inline scripts: the content security policy forbids them.
(function () {
  "use strict";
  var form = document.getElementById("mapping-form");
  if (!form) return;
  form.querySelectorAll("select[name^=map-]").forEach(function (select) {
    var initial = select.value;
    select.addEventListener("change", function () {
      select.closest("tr").classList.toggle("changed", select.value !== initial);
    });
  });
  form.addEventListener("submit", function (event) {
    if (!form.querySelector("input[name=key]:checked")) {
      event.preventDefault();
      var table = form.querySelector("table");
      table.classList.add("needs-key");
      table.scrollIntoView();
    }
  });
})();
