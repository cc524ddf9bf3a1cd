// Loom dashboard: lease countdowns, relative times and the live indicator.
// No inline script anywhere (the Content-Security-Policy allows only this server's files).
(function () {
  "use strict";
  function span(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var at = Number(el.getAttribute("data-expires"));
      if (!at) return;
      var left = at - now;
      el.textContent = left > 0 ? span(left) + " left" : "expired";
      el.classList.toggle("soon", left > 0 && left < 60000);
      el.classList.toggle("gone", left <= 0);
    });
    document.querySelectorAll("[data-ts]").forEach(function (el) {
      var at = Number(el.getAttribute("data-ts"));
      if (!at) return;
      var ago = now - at;
      el.textContent = ago < 5000 ? "just now" : span(ago) + " ago";
    });
  }
  function live(on) {
    document.querySelectorAll(".live").forEach(function (el) {
      el.classList.toggle("on", on);
      var text = el.querySelector(".live-text");
      if (text) text.textContent = on ? "live" : "reconnecting";
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    document.body.addEventListener("htmx:sseOpen", function () { live(true); });
    document.body.addEventListener("htmx:sseError", function () { live(false); });
    document.body.addEventListener("htmx:afterSwap", tick);
    document.body.addEventListener("htmx:sseMessage", function (ev) {
      var feed = document.getElementById("feed");
      if (feed) {
        while (feed.children.length > 60) feed.removeChild(feed.lastElementChild);
        var first = feed.firstElementChild;
        if (first) { first.classList.add("fresh"); }
      }
    });
    // Filters apply at once with JavaScript; the Filter button remains for no-JS.
    document.querySelectorAll("form.filters select").forEach(function (sel) {
      sel.addEventListener("change", function () { sel.form.submit(); });
    });
  });
})();
