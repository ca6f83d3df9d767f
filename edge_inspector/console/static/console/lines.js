// Lines page: polls /api/lines and redraws the table (status badge, cameras, last hour per line).
(function () {
  "use strict";
  const script = document.getElementById("lines-script");
  const api = script.dataset.api;
  const linesUrl = script.dataset.linesUrl || "/lines/";
  const pollMs = parseInt(script.dataset.pollMs || "2000", 10);
  const tbody = document.getElementById("lines");
  const updated = document.getElementById("lines-updated");

  function slug(s) { return String(s).toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^-+|-+$/g, ""); }
  function pct(x) { return (x === null || x === undefined) ? "" : (100 * x).toFixed(1) + " %"; }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function ago(t, now) { return t ? Math.max(0, now - t).toFixed(0) + " s ago" : "—"; }

  function row(l, now) {
    const tr = el("tr", {"id": "line-" + slug(l.line), "data-line": l.line});
    const name = el("td");
    name.appendChild(el("a", {"href": linesUrl + encodeURIComponent(l.line) + "/"}, l.line));
    tr.appendChild(name);
    const state = el("td");
    state.appendChild(el("span", {"class": "badge line-state " + (l.state === "online" ? "text-bg-success"
      : l.state === "unknown" ? "text-bg-secondary" : "text-bg-danger")}, l.state));
    tr.appendChild(state);
    const cams = el("td");
    l.cameras.forEach(function (c, i) {
      if (i) cams.appendChild(document.createTextNode(", "));
      cams.appendChild(el("a", {"href": linesUrl + encodeURIComponent(l.line) + "/" + encodeURIComponent(c) + "/"}, c));
    });
    tr.appendChild(cams);
    [String(l.total), pct(l.ok_rate), pct(l.defect_rate), pct(l.error_rate), ago(l.last_received, now)]
      .forEach(function (t) { tr.appendChild(el("td", {}, t)); });
    return tr;
  }

  async function poll() {
    try {
      const resp = await fetch(api, {credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      if (data.lines.length) tbody.replaceChildren.apply(tbody, data.lines.map(function (l) { return row(l, data.server_time); }));
      updated.textContent = data.lines.length + " lines · updated " + new Date().toLocaleTimeString();
    } catch (err) {
      updated.textContent = "disconnected (" + err.message + ")";
    } finally {
      setTimeout(poll, pollMs);
    }
  }
  poll();
})();
