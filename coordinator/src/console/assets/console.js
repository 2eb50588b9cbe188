// Tether console: progressive enhancement only. Pages work without it;
// with it, sections marked data-refresh reload themselves from the server
// (HTML fragments the server escaped), the run form previews its targets,
// and times (UTC in the HTML) are shown in the browser's time zone.
"use strict";

(function () {
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // The browser's name for its time zone at that instant (e.g. "GMT+5:30", "CET").
  function zone(d) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(d);
      for (var i = 0; i < parts.length; i++) {
        if (parts[i].type === "timeZoneName") return parts[i].value;
      }
    } catch (e) { /* no Intl: the offset below */ }
    var off = -d.getTimezoneOffset();
    return "UTC" + (off < 0 ? "-" : "+") + pad(Math.floor(Math.abs(off) / 60)) + ":" + pad(Math.abs(off) % 60);
  }

  // <time class=local datetime=…>: the server wrote UTC; show local time,
  // the UTC value in the title. <time class=ago>: "12 s ago", title local.
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      if (t.hasAttribute("data-utc")) return;
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      var local = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
        pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zone(d);
      var utc = t.classList.contains("ago") ? t.getAttribute("title") : t.textContent;
      t.setAttribute("data-utc", utc);
      if (t.classList.contains("ago")) {
        t.setAttribute("title", local + " (" + utc + ")");
      } else {
        t.textContent = local;
        t.setAttribute("title", utc);
      }
    });
  }

  function refresh(el) {
    var url = el.getAttribute("data-refresh");
    var every = parseInt(el.getAttribute("data-interval") || "2000", 10);
    function tick() {
      if (el.querySelector("[data-done]")) return; // finished: nothing more will change
      // A tab nobody looks at asks nothing of the coordinator.
      if (document.hidden) { setTimeout(tick, every); return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html", "X-Console-Fetch": "1" } })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          return r.text();
        })
        .then(function (html) {
          if (html !== null && html !== undefined) { el.innerHTML = html; localize(el); }
          setTimeout(tick, every);
        })
        .catch(function () { setTimeout(tick, every * 2); });
    }
    setTimeout(tick, every);
  }

  function preview(form) {
    var count = document.getElementById("target-count");
    var online = document.getElementById("target-online");
    if (!count) return;
    var timer = null;
    function update() {
      var mode = (form.querySelector("input[name=mode]:checked") || {}).value || "ids";
      form.setAttribute("data-mode", mode);
      var p = new URLSearchParams();
      p.set("mode", mode);
      ["ids", "tag_key", "tag_values"].forEach(function (k) {
        var i = form.querySelector("[name=" + k + "]");
        if (i) p.set(k, i.value);
      });
      fetch("/console/run/preview?" + p.toString(), { credentials: "same-origin", headers: { "X-Console-Fetch": "1" } })
        .then(function (r) { return r.json(); })
        .then(function (v) {
          if (v.Error) { count.textContent = "?"; online.textContent = v.Error; return; }
          count.textContent = String(v.Count);
          online.textContent = String(v.Online);
        })
        .catch(function () { count.textContent = "?"; });
    }
    function mode() {
      var m = (form.querySelector("input[name=mode]:checked") || {}).value || "ids";
      form.setAttribute("data-mode", m);
    }
    form.addEventListener("change", mode);
    form.addEventListener("input", function () {
      mode();
      clearTimeout(timer);
      timer = setTimeout(update, 250);
    });
    update();
  }

  // A pattern the document gives a parameter (allowedPattern), checked as
  // the user types; the coordinator checks it again when the command is sent.
  function patterns(form) {
    form.querySelectorAll("[data-pattern]").forEach(function (input) {
      var re;
      try { re = new RegExp(input.getAttribute("data-pattern")); } catch (e) { return; }
      function check() {
        var items = input.tagName === "TEXTAREA" ? input.value.split("\n").filter(function (l) { return l !== ""; }) : [input.value];
        var bad = items.filter(function (v) { return v !== "" && !re.test(v); });
        input.setCustomValidity(bad.length ? "does not match the pattern " + input.getAttribute("data-pattern") : "");
        var msg = input.parentNode.querySelector(".field-error");
        if (msg) msg.textContent = input.validationMessage;
      }
      input.addEventListener("input", check);
      check();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    document.querySelectorAll("[data-refresh]").forEach(refresh);
    var run = document.getElementById("run");
    if (run) { preview(run); patterns(run); }
    var pick = document.getElementById("document");
    if (pick && pick.form) {
      pick.addEventListener("change", function () {
        var v = pick.form.querySelector("[name=version]");
        if (v) v.value = "";
        pick.form.submit();
      });
    }
  });
})();
