// axsync browse: keyboard shortcuts only; every page works without this file.
//   j / k   next / previous message in the list     /   focus the search box
//   u       back to the list (phones)               Esc leave the search box
(function () {
  "use strict";

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll(".messages a[data-uid]"));
  }

  function step(delta) {
    var links = rows();
    if (!links.length) return;
    var at = -1;
    for (var i = 0; i < links.length; i++) {
      if (links[i].parentNode.classList.contains("selected")) at = i;
    }
    var next = at < 0 ? (delta > 0 ? 0 : links.length - 1) : at + delta;
    if (next < 0 || next >= links.length) {
      var pager = document.querySelector(delta > 0 ? ".pager a.next" : ".pager a.prev");
      if (pager) window.location.href = pager.href;
      return;
    }
    window.location.href = links[next].href;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.key === "j") {
      step(1);
    } else if (event.key === "k") {
      step(-1);
    } else if (event.key === "/") {
      event.preventDefault();
      var box = document.getElementById("search");
      if (box) box.focus();
    } else if (event.key === "u") {
      var back = document.querySelector(".reader-nav a.back");
      if (back) window.location.href = back.href;
    }
  });

  var selected = document.querySelector(".messages li.selected");
  if (selected && selected.scrollIntoView) selected.scrollIntoView({ block: "nearest" });
})();
