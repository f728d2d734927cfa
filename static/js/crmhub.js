// crmhub page behaviour. No inline scripts anywhere: the content security policy forbids them.
(function () {
  "use strict";
  // "/" focuses the search box from anywhere (unless already typing).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    var box = document.querySelector(".quicksearch input, .filters input[type=search]");
    if (box) { event.preventDefault(); box.focus(); box.select(); }
  });
  // htmx sends the CSRF token with every non-GET request.
  document.addEventListener("htmx:configRequest", function (event) {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) event.detail.headers["X-CSRFToken"] = input.value;
  });
})();
