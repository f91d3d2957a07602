// Live updates: every few seconds, fetch this page again and replace the parts marked
// data-live, unless the user is working in one (focus or a ticked box inside).
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box) return;
  box.checked = localStorage.getItem("hookline-live") !== "off";
  box.addEventListener("change", function () { localStorage.setItem("hookline-live", box.checked ? "on" : "off"); });
  function busy(el) {
    return el.contains(document.activeElement) || el.querySelector("input:checked, details[open]") !== null;
  }
  function refresh() {
    if (!box.checked || document.visibilityState !== "visible") return;
    var parts = document.querySelectorAll("[data-live][id]");
    if (parts.length === 0) return;
    fetch(location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        parts.forEach(function (el) {
          var next = doc.getElementById(el.id);
          if (next && !busy(el) && next.innerHTML !== el.innerHTML) el.innerHTML = next.innerHTML;
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {});
  }
  setInterval(refresh, 5000);
})();
