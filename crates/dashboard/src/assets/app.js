// Rampart dashboard: small enhancements. Every page works without this file.
(function () {
  "use strict";

  // Local times for <time data-ts="unix seconds">.
  document.querySelectorAll("time[data-ts]").forEach(function (el) {
    var d = new Date(Number(el.dataset.ts) * 1000);
    el.title = d.toISOString();
    el.textContent = d.toLocaleString();
  });

  // "expires in N s" countdowns.
  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Math.max(0, Math.round(Number(el.dataset.expires) - now));
      el.textContent = left > 0 ? "expires in " + left + " s" : "expired";
      el.classList.toggle("urgent", left <= 10);
    });
  }
  tick();
  setInterval(tick, 1000);

  // Confirm before destructive actions.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  });

  // Copy buttons.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.dataset.copy);
      if (!target) return;
      target.select();
      if (navigator.clipboard) navigator.clipboard.writeText(target.value);
      button.textContent = "Copied";
    });
  });

  // Keep pending requests current: reload when the set changes (new
  // request, answered elsewhere, expired), unless the user is choosing.
  var list = document.querySelector("[data-live-pending]");
  var single = document.querySelector("[data-live-approval]");
  if (!list && !single) return;
  var busy = false;
  var leaving = false;
  document.addEventListener("focusin", function (e) { busy = !!(e.target.closest && e.target.closest("select")); });
  document.addEventListener("submit", function () { leaving = true; });
  setInterval(function () {
    fetch("/api/pending", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (pending) {
        if (!pending || busy || leaving) return;
        var ids = pending.map(function (a) { return a.id; }).sort();
        var changed = list
          ? ids.join(",") !== list.dataset.livePending
          : ids.indexOf(single.dataset.liveApproval) < 0;
        if (changed) window.location.reload();
      })
      .catch(function () {});
  }, 2000);
})();
