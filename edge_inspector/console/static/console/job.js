// Training job page: polls /api/jobs/<id> until the job finishes.
(function () {
  "use strict";
  const api = document.getElementById("job-script").dataset.api;
  async function poll() {
    let finished = false;
    try {
      const resp = await fetch(api, {credentials: "same-origin"});
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const job = await resp.json();
      const pct = Math.round(100 * job.progress);
      const bar = document.getElementById("job-progress");
      bar.style.width = pct + "%";
      bar.textContent = pct + " %";
      document.getElementById("job-status").textContent = job.status;
      document.getElementById("job-step").textContent = job.step || "";
      const logEl = document.getElementById("job-log");
      const atBottom = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
      logEl.textContent = job.log;
      if (atBottom) logEl.scrollTop = logEl.scrollHeight;
      const errEl = document.getElementById("job-error");
      errEl.textContent = job.error;
      errEl.classList.toggle("d-none", !job.error);
      finished = job.finished;
      if (finished) {
        const cancel = document.getElementById("cancel-form");
        if (cancel) cancel.remove();
        if (job.model_id && !document.getElementById("job-model-link")) {
          const box = document.getElementById("job-model");
          const a = document.createElement("a");
          a.className = "btn btn-success btn-sm"; a.id = "job-model-link";
          a.href = "/models/" + job.model_id + "/"; a.textContent = "Open the trained model";
          box.appendChild(a); box.classList.remove("d-none");
        }
      }
    } catch (err) {
      document.getElementById("job-step").textContent = "(update failed: " + err.message + ")";
    }
    if (!finished) setTimeout(poll, 1500);
  }
  poll();
})();
