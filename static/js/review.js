// Review queue keyboard work: j/k move, o/Enter open, a approve, r reject, s skip, x select,
// m assign to me, ? help. No inline scripts (the content security policy forbids them).
(function () {
  "use strict";

  function items() { return Array.prototype.slice.call(document.querySelectorAll(".items .item")); }
  function current() { return document.querySelector(".items .item.current"); }

  function focusItem(item) {
    if (!item) return;
    items().forEach(function (el) { el.classList.remove("current"); });
    item.classList.add("current");
    item.focus({ preventScroll: true });
    item.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    var list = items();
    if (!list.length) return;
    var index = list.indexOf(current());
    var next = index < 0 ? 0 : Math.min(Math.max(index + step, 0), list.length - 1);
    focusItem(list[next]);
  }

  // The next item still waiting (decided and skipped ones are passed over).
  function advance(from) {
    var list = items();
    var index = list.indexOf(from);
    for (var i = index + 1; i < list.length; i++) {
      if (!list[i].classList.contains("done")) { focusItem(list[i]); return; }
    }
    focusItem(from);
  }

  function updateSelected() {
    var counter = document.getElementById("selected-count");
    if (counter) counter.textContent = document.querySelectorAll(".items .item input.select:checked").length;
  }

  // Shortcuts stay off while typing; a ticked checkbox or radio keeps them on.
  function typing(target) {
    if (!target) return false;
    if (target.tagName === "INPUT") return ["checkbox", "radio", "button", "submit"].indexOf(target.type) < 0;
    return target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable;
  }

  document.addEventListener("keydown", function (event) {
    if (!document.querySelector(".items")) return;
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var help = document.getElementById("shortcuts");
    if (event.key === "?") {
      event.preventDefault();
      if (help.open) help.close(); else help.showModal();
      return;
    }
    if (help && help.open) return;
    var item = current();
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "s":
        if (item) { item.classList.add("skipped"); advance(item); }
        break;
      case "x":
        if (item) {
          var box = item.querySelector("input.select");
          if (box) { box.checked = !box.checked; updateSelected(); }
        }
        break;
      case "o": case "Enter":
        if (item && (event.key === "o" || event.target === item)) { window.location.href = item.dataset.compare; }
        else return;
        break;
      case "a": case "r": case "m":
        if (!item || item.classList.contains("done")) return;
        var button = item.querySelector(event.key === "a" ? ".act-approve" : event.key === "r" ? ".act-reject" : ".act-assign-me");
        if (button) button.click();
        break;
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches(".items input.select")) updateSelected();
  });

  document.addEventListener("focusin", function (event) {
    var item = event.target.closest && event.target.closest(".items .item");
    if (item && !item.classList.contains("current")) {
      items().forEach(function (el) { el.classList.remove("current"); });
      item.classList.add("current");
    }
  });

  // A decision came back: mark the item done and move on to the next one.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.id || target.id.indexOf("decide-") !== 0) return;
    var decided = document.getElementById(target.id);
    var item = decided && decided.closest(".item");
    if (item && decided.dataset.decided) {
      item.classList.add("done");
      advance(item);
    }
  });
  // htmx leaves 4xx answers unswapped by default; a conflict (decided meanwhile, stale) is shown.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 409) { event.detail.shouldSwap = true; event.detail.isError = false; }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "queue") focusItem(items()[0]);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var list = items();
    if (list.length) focusItem(list[0]);
    updateSelected();
  });
})();
