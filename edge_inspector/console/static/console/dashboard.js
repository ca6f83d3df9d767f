// Dashboard live updates: polls /api/verdicts?since=<last id> and updates the page in place.
// On a line page (data-line) or a camera page (data-camera too) the same view narrowed to it.
(function () {
  "use strict";
  const script = document.getElementById("dashboard-script");
  const api = script.dataset.api;
  const pollMs = parseInt(script.dataset.pollMs || "1000", 10);
  const onlyLine = script.dataset.line || "";
  const onlyCamera = script.dataset.camera || "";
  const linesUrl = script.dataset.linesUrl || "/lines/";
  const lineEl = document.getElementById("line-status");
  const tbody = document.getElementById("verdicts");
  const camerasEl = document.getElementById("cameras");
  const statusEl = document.getElementById("live-status");
  const lastFrames = {}; // line/camera -> newest verdicts with images
  const MAX_ROWS = 50;
  let lastId = 0;

  function key(s) { return String(s).replace(/[^A-Za-z0-9_-]/g, "_"); }
  function cardKey(line, camera) { return key(line) + "__" + key(camera); }
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
      const k = cardKey(v.line, v.camera);
      const list = lastFrames[k] = lastFrames[k] || [];
      list.unshift(v);
      list.length = Math.min(list.length, 6);
    }
  }

  function renderCameras(stats) {
    if (!stats.length) return;
    const none = document.getElementById("no-cameras");
    if (none) none.remove();
    for (const s of stats) {
      const id = "camera-" + cardKey(s.line, s.camera);
      let card = document.getElementById(id);
      if (!card) {
        card = el("div", {"class": "col-md-6 col-xl-4", "id": id});
        card.innerHTML = '<div class="card camera-card"><div class="card-body">' +
          '<h2 class="h5 card-title"><a></a></h2><p class="mb-2 small stats"></p><div class="thumbs"></div></div></div>';
        card.dataset.line = s.line;
        card.dataset.camera = s.camera;
        const link = card.querySelector(".card-title a");
        link.textContent = onlyLine ? s.camera : s.line + " · " + s.camera;
        link.setAttribute("href", linesUrl + encodeURIComponent(s.line) + "/" + encodeURIComponent(s.camera) + "/");
        camerasEl.appendChild(card);
      }
      card.querySelector(".stats").textContent = s.total + " parts · OK " + pct(s.ok_rate) + " · defect " +
        pct(s.defect_rate) + (s.error_rate ? " · error " + pct(s.error_rate) : "") + " · latency " + fmt(s.latency_ms, 1) + " ms";
      const thumbs = card.querySelector(".thumbs");
      thumbs.replaceChildren();
      for (const v of (lastFrames[cardKey(s.line, s.camera)] || [])) {
        const a = el("a", {"href": v.image_url, "title": v.verdict + " #" + v.frame});
        a.appendChild(el("img", {"class": "thumb border " + (v.verdict === "defect" ? "border-danger" : ""),
          "src": v.overlay_url, "alt": "frame " + v.frame}));
        thumbs.appendChild(a);
      }
    }
  }

  function feedText(feed, now) {
    let text = (feed.kind === "mqtt" ? "MQTT " : "ZeroMQ ") + feed.endpoint;
    if (feed.kind === "mqtt" && !feed.connected) text += " (not connected)";
    text += " · " + feed.received + " received";
    if (feed.rejected) text += " · " + feed.rejected + " malformed";
    text += feed.last_received ? " · last " + Math.max(0, now - feed.last_received).toFixed(0) + " s ago"
                               : " · nothing yet (is the daemon publishing?)";
    return text;
  }

  function renderFeed(feeds, now) {
    const el = document.getElementById("feed-status");
    if (!feeds || !feeds.length) { el.textContent = "verdict subscriber not running in this process"; return; }
    el.textContent = feeds.map(function (f) { return feedText(f, now); }).join(" | ");
  }

  function renderLine(state) {
    if (!lineEl || !state) return;
    lineEl.textContent = state.state;
    lineEl.className = "badge me-2 " + (state.state === "online" ? "text-bg-success" : "text-bg-danger");
  }

  async function poll() {
    try {
      let url = api + "?since=" + lastId + "&limit=200";
      if (onlyLine) url += "&line=" + encodeURIComponent(onlyLine);
      if (onlyCamera) url += "&camera=" + encodeURIComponent(onlyCamera);
      const resp = await fetch(url, {credentials: "same-origin",
        headers: {"Accept": "application/json"}});
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      for (const v of data.verdicts) addRow(v);
      lastId = data.last_id;
      renderCameras(data.cameras);
      renderFeed(data.feeds || (data.feed ? [data.feed] : []), data.server_time);
      renderLine(data.line);
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
