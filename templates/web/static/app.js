// papermail: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // Sign-up: pre-select the browser's time zone, so digests come in the subscriber's morning
  // (only on a fresh form: a zone the reader chose is kept).
  document.querySelectorAll("[data-auto-timezone]").forEach(function (field) {
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      var known = !field.options || Array.prototype.some.call(field.options, function (o) {
        return o.value === zone;
      });
      if (zone && known) field.value = zone;
    } catch (e) { /* keep the server's default */ }
  });

  // The weekday only matters for weekly digests.
  var weeklyOnly = document.querySelector("[data-weekly-only]");
  if (weeklyOnly) {
    var radios = document.querySelectorAll('input[name="frequency"]');
    var sync = function () {
      var weekly = document.querySelector('input[name="frequency"][value="weekly"]');
      weeklyOnly.hidden = !(weekly && weekly.checked);
    };
    radios.forEach(function (r) { r.addEventListener("change", sync); });
    sync();
  }

  // Live preview on the manage page: re-rank recent papers as keywords are typed.
  var panel = document.querySelector("[data-preview-url]");
  var form = document.getElementById("prefs");
  if (!panel || !form || !window.fetch || !window.AbortController) return;
  var url = panel.getAttribute("data-preview-url");
  var list = panel.querySelector(".preview-list");
  var summary = panel.querySelector(".preview-summary");
  var timer = null;
  var pending = null;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  var jump = form.querySelector("[data-preview-jump]");

  function show(data) {
    summary.textContent = data.summary;
    if (jump) jump.textContent = "↓ " + data.summary.replace(/:$/, "");
    var items = document.createDocumentFragment();
    data.items.forEach(function (item) {
      var li = el("li", "paper");
      var title = el(item.link ? "a" : "span", "paper-title", item.title);
      if (item.link) { title.href = item.link; title.rel = "noopener noreferrer"; }
      li.appendChild(title);
      if (item.meta) li.appendChild(el("p", "meta", item.meta));
      var why = el("p", "why", "Matched ");
      item.reasons.forEach(function (reason, i) {
        why.appendChild(el("mark", "", reason.term));
        if (reason.where) why.appendChild(document.createTextNode(" " + reason.where));
        if (i < item.reasons.length - 1) why.appendChild(document.createTextNode(", "));
      });
      li.appendChild(why);
      items.appendChild(li);
    });
    list.replaceChildren(items);
  }

  function refresh() {
    if (pending) pending.abort();
    pending = new AbortController();
    panel.setAttribute("aria-busy", "true");
    fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      credentials: "same-origin",
      signal: pending.signal,
      body: JSON.stringify({
        csrf: form.elements.csrf.value,
        keywords: form.elements.keywords.value,
        excluded: form.elements.excluded.value
      })
    })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) throw new Error(data.error || "preview failed");
          return data;
        });
      })
      .then(function (data) {
        show(data);
        panel.removeAttribute("aria-busy");
      })
      .catch(function (error) {
        if (error.name === "AbortError") return;
        summary.textContent = "Preview unavailable: " + error.message;
        panel.removeAttribute("aria-busy");
      });
  }

  ["keywords", "excluded"].forEach(function (name) {
    form.elements[name].addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 300);
    });
  });
})();
