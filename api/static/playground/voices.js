// The voice list (names, built-in and this key's custom voices), deleting a custom voice, and cloning one from a
// recorded or uploaded clip. Uses the helpers playground.js defines first (headers, show, setBusy, responseProblem,
// networkProblem); each call says what it is doing and how it ended.
"use strict";

(() => {
  const el = (id) => document.getElementById(id);
  const isCustom = (id) => id.startsWith("voice_");  // custom voice ids are voice_<hex>; keep_voice.js adds such too
  let recorded = null;
  let recorder = null;

  // fetch that turns "could not connect" and refusals into the page's words: {response} or {problem}.
  async function call(what, url, init) {
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return { problem: networkProblem(error, what) };
    }
    if (!response.ok) return { problem: await responseProblem(response, what), response };
    return { response };
  }

  function syncDelete() {
    const id = el("voice").value || "";
    el("delete-voice").disabled = !isCustom(id);
  }

  async function loadVoices(selected) {
    const note = el("voice-status");
    show(note, "Loading voices…", "busy");
    const { response, problem } = await call("Loading voices", "/v1/audio/voices", { headers: headers(false) });
    if (problem) { show(note, problem, "error"); syncDelete(); return; }
    const body = await response.json();
    const select = el("voice");
    select.replaceChildren();
    for (const voice of body.voices) {
      const custom = voice.type === "custom";
      const option = new Option(custom ? `${voice.name} (custom)` : (voice.name || voice.id), voice.id);
      option.title = voice.id;
      option.selected = voice.id === (selected || body.default);
      select.append(option);
    }
    show(note, "");
    syncDelete();
  }

  async function deleteVoice() {
    const select = el("voice");
    const id = select.value;
    if (!isCustom(id)) return;
    const name = select.selectedOptions[0] ? select.selectedOptions[0].textContent : id;
    const button = el("delete-voice");
    const note = el("voice-status");
    setBusy(button, true);
    show(note, `Deleting ${name}…`, "busy");
    try {
      const { problem } = await call("Deleting the voice", `/v1/audio/voices/${encodeURIComponent(id)}`,
                                     { method: "DELETE", headers: headers(false) });
      if (problem) { show(note, problem, "error"); return; }
      await loadVoices();
      show(note, `Deleted ${name}.`);
    } finally {
      setBusy(button, false);
      syncDelete();
    }
  }

  async function record() {
    const button = el("record");
    if (recorder && recorder.state === "recording") { recorder.stop(); return; }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const parts = [];
      recorder = new MediaRecorder(stream);
      recorder.ondataavailable = (e) => parts.push(e.data);
      recorder.onstop = () => {
        recorded = new Blob(parts, { type: recorder.mimeType });
        stream.getTracks().forEach((t) => t.stop());
        button.textContent = "Record again";
        show(el("clone-note"), `Recorded ${(recorded.size / 1024).toFixed(0)} KiB.`, "note");
      };
      recorder.start();
      button.textContent = "Stop recording";
    } catch (error) {
      show(el("clone-note"), `Recording is not available here: ${error.message}`, "note error");
    }
  }

  async function createVoice() {
    const note = el("clone-note");
    const file = el("clone-file").files[0] || recorded;
    const name = el("clone-name").value.trim();
    if (!file || !name) { show(note, "Record or choose a clip and give the voice a name.", "note error"); return; }
    const form = new FormData();
    form.append("audio_sample", file, file.name || "reference.webm");
    form.append("name", name);
    if (el("clone-transcript").value.trim()) form.append("transcript", el("clone-transcript").value.trim());
    const button = el("clone");
    setBusy(button, true);
    show(note, "Creating the voice: uploading and encoding the clip…", "note busy");
    try {
      const { response, problem } = await call("Creating the voice", "/v1/audio/voices",
                                               { method: "POST", headers: headers(false), body: form });
      if (response && [404, 405, 501].includes(response.status)) {
        show(note, "Voice cloning is not available on this server.", "note error");
        return;
      }
      if (problem) { show(note, problem, "note error"); return; }
      const voice = await response.json();
      await loadVoices(voice.id);
      show(note, `Created ${voice.id}; it is selected.`, "note");
    } finally {
      setBusy(button, false);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    el("voice").addEventListener("change", syncDelete);
    el("delete-voice").addEventListener("click", deleteVoice);
    el("record").addEventListener("click", record);
    el("clone").addEventListener("click", createVoice);
    document.addEventListener("playground:key", () => loadVoices());
    loadVoices();
  });
})();
