// "Keep this voice": after a synthesis, save the voice it spoke with as a custom voice of this key
// (POST /v1/audio/voices {"from_request_id", "name"}: its 32 global tokens, no recording needed). Self-contained:
// playground.js announces each finished synthesis with a "tts:synthesized" event carrying its X-Server-Request-ID.
"use strict";

(() => {
  const KEY_STORAGE = "spark-tts-playground-api-key";
  const el = (id) => document.getElementById(id);
  let requestId = null;

  function note(text, isError = false) {
    el("keep-status").textContent = text;
    el("keep-status").className = isError ? "error" : "";
  }

  document.addEventListener("tts:synthesized", (event) => {
    requestId = event.detail && event.detail.requestId;
    el("keep-panel").hidden = !requestId;
    note("");
  });

  async function keep() {
    if (!requestId) return;
    const headers = { "Content-Type": "application/json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = `Bearer ${key}`;
    const name = el("keep-name").value.trim() || "Kept voice";
    el("keep").disabled = true;
    try {
      const response = await fetch("/v1/audio/voices", { method: "POST", headers,
                                                          body: JSON.stringify({ from_request_id: requestId, name }) });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        const error = body.error || {};
        note(`${response.status} ${error.code || response.statusText}: ${error.message || ""}`, true);
        return;
      }
      const select = el("voice");
      select.add(new Option(`${body.name} (custom)`, body.id));
      select.value = body.id;
      note(`Kept as ${body.id}; it is now the selected voice.`);
    } finally {
      el("keep").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => el("keep").addEventListener("click", keep));
})();
