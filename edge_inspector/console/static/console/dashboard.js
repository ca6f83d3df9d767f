// Dashboard live updates: polls /api/verdicts?since=<last id> and updates the page in place.
(function () {
  "use strict";
  const script = document.getElementById("dashboard-script");
  const api = script.dataset.api;
  const pollMs = parseInt(script.dataset.pollMs || "1000", 10);
  const tbody = document.getElementById("verdicts");
  const camerasEl = document.getElementById("cameras");
  const statusEl = document.getElementById("live-status");
  const lastFrames = {}; // camera -> newest verdicts with images
  const MAX_ROWS = 50;
  let lastId = 0;

  function fmt(x, digits) { return (x === null || x === undefined) ? "—" : Number(x).toFixed(digits); }
  function pct(x) { return (100 * x).toFixed(1) + " %"; }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function addRow(v) {
    const tr = el("tr", {"class": "new-row", "data-verdict-id": v.id});
    const cells = [new Date(v.captured_at).toLocaleTimeString(), v.line, v.camera, v.frame, v.verdict,
      fmt(v.score, 3), v.defect_type || "", fmt(v.latency_ms, 1)];
    cells.forEach(function (c, i) {
      const td = el("td", i === 4 ? {"class": "verdict-" + v.verdict} : {}, String(c));
      tr.appendChild(td);
    });
    tbody.insertBefore(tr, tbody.firstChild);
    while (tbody.children.length > MAX_ROWS) tbody.removeChild(tbody.lastChild);
    if (v.image_url) {
      const list = lastFrames[v.camera] = lastFrames[v.camera] || [];
      list.unshift(v);
      list.length = Math.min(list.length, 6);
    }
  }

  function renderCameras(stats) {
    if (!stats.length) return;
    const none = document.getElementById("no-cameras");
    if (none) none.remove();
    for (const s of stats) {
      const id = "camera-" + s.camera.replace(/[^A-Za-z0-9_-]/g, "_");
      let card = document.getElementById(id);
      if (!card) {
        card = el("div", {"class": "col-md-6 col-xl-4", "id": id});
        card.innerHTML = '<div class="card camera-card"><div class="card-body">' +
          '<h2 class="h5 card-title"></h2><p class="mb-2 small stats"></p><div class="thumbs"></div></div></div>';
        card.querySelector(".card-title").textContent = s.camera;
        camerasEl.appendChild(card);
      }
      card.querySelector(".stats").textContent = s.total + " parts · OK " + pct(s.ok_rate) + " · defect " +
        pct(s.defect_rate) + (s.error_rate ? " · error " + pct(s.error_rate) : "") + " · latency " + fmt(s.latency_ms, 1) + " ms";
      const thumbs = card.querySelector(".thumbs");
      thumbs.replaceChildren();
      for (const v of (lastFrames[s.camera] || [])) {
        const a = el("a", {"href": v.image_url, "title": v.verdict + " #" + v.frame});
        a.appendChild(el("img", {"class": "thumb border " + (v.verdict === "defect" ? "border-danger" : ""),
          "src": v.overlay_url, "alt": "frame " + v.frame}));
        thumbs.appendChild(a);
      }
    }
  }

  function renderFeed(feed, now) {
    const el = document.getElementById("feed-status");
    if (!feed) { el.textContent = "verdict subscriber not running in this process"; return; }
    let text = "ZeroMQ " + feed.endpoint + " · " + feed.received + " received";
    if (feed.rejected) text += " · " + feed.rejected + " malformed";
    text += feed.last_received ? " · last " + Math.max(0, now - feed.last_received).toFixed(0) + " s ago"
                               : " · nothing yet (is the daemon publishing?)";
    el.textContent = text;
  }

  async function poll() {
    try {
      const resp = await fetch(api + "?since=" + lastId + "&limit=200", {credentials: "same-origin",
        headers: {"Accept": "application/json"}});
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      for (const v of data.verdicts) addRow(v);
      lastId = data.last_id;
      renderCameras(data.cameras);
      renderFeed(data.feed, data.server_time);
      // The daemon's own signals (pid, metrics, stream silence), not just this page's polling.
      const d = data.daemon || {state: "unknown", text: "live"};
      statusEl.textContent = d.text;
      statusEl.className = "badge " + (d.state === "live" ? "text-bg-success"
                                       : d.state === "unknown" ? "text-bg-secondary" : "text-bg-danger");
      statusEl.dataset.state = d.state;
    } catch (err) {
      statusEl.textContent = "disconnected (" + err.message + ")";
      statusEl.className = "badge text-bg-danger";
    } finally {
      setTimeout(poll, pollMs);
    }
  }
  poll();
})();
