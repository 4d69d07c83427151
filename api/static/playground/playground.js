// Spark-TTS playground: streams PCM from POST /v1/tts/generate into Web Audio while it is being generated.
// No third-party code, no inline script (the page is served with a strict Content-Security-Policy).
"use strict";

const EXAMPLES = {
  en: "Hello! This is Spark-TTS, streaming speech while it is still being generated. It costs $5.50 and arrives on 15/03/2024.",
  hi: "नमस्ते! यह स्पार्क टीटीएस है। मेरे पास 3 सेब हैं और कीमत ₹1,00,000 है।",
  zh: "你好！我有3个苹果，2024年3月5日，价格是12.5元，增长了50%。",
};
const KEY_STORAGE = "spark-tts-playground-api-key";

const $ = (id) => document.getElementById(id);
const state = {
  context: null, controller: null, chunks: [], sampleRate: 16000,
  // Read by the end-to-end test: when audio was first scheduled and when the stream ended (performance.now()).
  stats: { running: false, done: false, startedAt: null, firstAudioAt: null, streamEndAt: null,
           streamSamples: 0, scheduledSamples: 0, ttfaMs: null, rtf: null, error: null },
};
window.playgroundStats = state.stats;

function headers(json = true) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status} ${body.error.code}: ${body.error.message}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadHealth() {
  try {
    const health = await (await fetch("/v1/tts/health")).json();
    if (health.demo_model) {
      $("model-note").textContent = "The demo model is loaded: random weights, so the audio is noise. " +
        "Latency, streaming and every control work as they do with the real model.";
      $("model-note").hidden = false;
    }
  } catch (_) { /* the page still works without it */ }
}

async function loadVoices() {
  const select = $("voice");
  const response = await fetch("/v1/audio/voices", { headers: headers(false) });
  if (!response.ok) { setStatus(`Voices: ${await errorText(response)}`, true); return; }
  const body = await response.json();
  select.replaceChildren();
  for (const voice of body.voices) {
    const option = document.createElement("option");
    option.value = voice.id;
    option.textContent = voice.type === "custom" ? `${voice.name} (custom)` : voice.id;
    option.selected = voice.id === body.default;
    select.append(option);
  }
}

function drawWave(samples) {
  const canvas = $("wave");
  const g = canvas.getContext("2d");
  g.fillStyle = "#0f1420";
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.strokeStyle = "#4fd1c5";
  g.beginPath();
  const step = Math.max(1, Math.floor(samples.length / canvas.width));
  for (let x = 0; x < canvas.width; x++) {
    let peak = 0;
    for (let i = x * step; i < Math.min(samples.length, (x + 1) * step); i++) peak = Math.max(peak, Math.abs(samples[i]));
    const h = peak * canvas.height / 2;
    g.moveTo(x, canvas.height / 2 - h);
    g.lineTo(x, canvas.height / 2 + h);
  }
  g.stroke();
}

function s16ToFloat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

async function play() {
  const stats = state.stats;
  Object.assign(stats, { running: true, done: false, startedAt: performance.now(), firstAudioAt: null,
                         streamEndAt: null, streamSamples: 0, scheduledSamples: 0, ttfaMs: null, rtf: null, error: null });
  $("ttfa").textContent = $("rtf").textContent = $("audio-seconds").textContent = "–";
  state.sampleRate = Number($("rate").value);
  state.chunks = [];
  state.context = state.context || new AudioContext();
  await state.context.resume();
  state.controller = new AbortController();
  $("play").disabled = true; $("stop").disabled = false; $("download").disabled = true;
  setStatus("Generating…");
  const body = { text: $("text").value, speaker: $("voice").value || undefined, stream: true, format: "pcm",
                 sample_rate: state.sampleRate, latency: $("latency").value };
  let cursor = 0;
  let carry = new Uint8Array(0);
  try {
    const response = await fetch("/v1/tts/generate", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                      signal: state.controller.signal });
    if (!response.ok) throw new Error(await errorText(response));
    const reader = response.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let bytes = value;
      if (carry.length) { bytes = new Uint8Array(carry.length + value.length); bytes.set(carry); bytes.set(value, carry.length); }
      const even = bytes.length & ~1;
      carry = bytes.slice(even);
      if (!even) continue;
      const samples = s16ToFloat(bytes.subarray(0, even));
      stats.streamSamples += samples.length;
      state.chunks.push(samples);
      const buffer = state.context.createBuffer(1, samples.length, state.sampleRate);
      buffer.copyToChannel(samples, 0);
      const source = state.context.createBufferSource();
      source.buffer = buffer;
      source.connect(state.context.destination);
      cursor = Math.max(cursor, state.context.currentTime + 0.05);
      source.start(cursor);
      cursor += buffer.duration;
      stats.scheduledSamples += samples.length;
      if (stats.firstAudioAt === null) {
        stats.firstAudioAt = performance.now();
        stats.ttfaMs = stats.firstAudioAt - stats.startedAt;
        $("ttfa").textContent = `${stats.ttfaMs.toFixed(0)} ms`;
      }
      drawWave(samples);
      $("audio-seconds").textContent = `${(stats.streamSamples / state.sampleRate).toFixed(2)} s`;
    }
    stats.streamEndAt = performance.now();
    const seconds = stats.streamSamples / state.sampleRate;
    stats.rtf = seconds > 0 ? (stats.streamEndAt - stats.startedAt) / 1000 / seconds : null;
    $("rtf").textContent = stats.rtf === null ? "–" : stats.rtf.toFixed(3);
    setStatus(`Done: ${seconds.toFixed(2)} s of audio.`);
    // keep_voice.js offers "Keep this voice" for this request.
    document.dispatchEvent(new CustomEvent("tts:synthesized",
                                           { detail: { requestId: response.headers.get("X-Server-Request-ID") } }));
    $("download").disabled = state.chunks.length === 0;
  } catch (error) {
    stats.error = String(error.message || error);
    setStatus(error.name === "AbortError" ? "Stopped." : stats.error, error.name !== "AbortError");
  } finally {
    stats.running = false;
    stats.done = true;
    $("play").disabled = false; $("stop").disabled = true;
  }
}

function stop() {
  if (state.controller) state.controller.abort();
  if (state.context) state.context.suspend().then(() => { state.context = null; });
}

function download() {
  const total = state.chunks.reduce((n, c) => n + c.length, 0);
  const buffer = new ArrayBuffer(44 + total * 2);
  const v = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) v.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); v.setUint32(4, 36 + total * 2, true); text(8, "WAVE"); text(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, state.sampleRate, true); v.setUint32(28, state.sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true); text(36, "data"); v.setUint32(40, total * 2, true);
  let offset = 44;
  for (const chunk of state.chunks) {
    for (const s of chunk) { v.setInt16(offset, Math.max(-1, Math.min(1, s)) * 32767, true); offset += 2; }
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([buffer], { type: "audio/wav" }));
  link.download = "spark-tts.wav";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

async function showNormalized() {
  const response = await fetch("/v1/tts/normalize", { method: "POST", headers: headers(),
                                                       body: JSON.stringify({ text: $("text").value }) });
  if (!response.ok) { setStatus(`Normalise: ${await errorText(response)}`, true); return; }
  const body = await response.json();
  $("normalized").textContent = `${body.normalized}\n(scripts: ${body.languages.join(", ")})`;
  const list = $("chunks");
  list.replaceChildren(...body.chunks.map((chunk) => { const li = document.createElement("li"); li.textContent = chunk; return li; }));
}

// ----------------------------------------------------------------------------------------- cloning
let recorded = null;

async function record() {
  const button = $("record");
  if (button.dataset.recorder === "on") { state.recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const parts = [];
    state.recorder = new MediaRecorder(stream);
    state.recorder.ondataavailable = (e) => parts.push(e.data);
    state.recorder.onstop = () => {
      recorded = new Blob(parts, { type: state.recorder.mimeType });
      stream.getTracks().forEach((t) => t.stop());
      button.dataset.recorder = "off"; button.textContent = "Record again";
      $("clone-note").textContent = `Recorded ${(recorded.size / 1024).toFixed(0)} KiB.`;
    };
    state.recorder.start();
    button.dataset.recorder = "on"; button.textContent = "Stop recording";
  } catch (error) {
    $("clone-note").textContent = `Recording is not available here: ${error.message}`;
  }
}

async function createVoice() {
  const file = $("clone-file").files[0] || recorded;
  const name = $("clone-name").value.trim();
  if (!file || !name) { $("clone-note").textContent = "Record or choose a clip and give the voice a name."; return; }
  const form = new FormData();
  form.append("audio_sample", file, file.name || "reference.webm");
  form.append("name", name);
  if ($("clone-transcript").value.trim()) form.append("transcript", $("clone-transcript").value.trim());
  const response = await fetch("/v1/audio/voices", { method: "POST", headers: headers(false), body: form });
  if (response.status === 404 || response.status === 405 || response.status === 501) {
    $("clone-note").textContent = "Voice cloning is not available on this server.";
    return;
  }
  if (!response.ok) { $("clone-note").textContent = await errorText(response); return; }
  const voice = await response.json();
  await loadVoices();
  $("voice").value = voice.id;
  $("clone-note").textContent = `Created ${voice.id}; it is selected.`;
}

// ----------------------------------------------------------------------------------------- wiring
document.addEventListener("DOMContentLoaded", () => {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    if (key.value) sessionStorage.setItem(KEY_STORAGE, key.value); else sessionStorage.removeItem(KEY_STORAGE);
    loadVoices();
  });
  for (const button of document.querySelectorAll("[data-example]")) {
    button.addEventListener("click", () => { $("text").value = EXAMPLES[button.dataset.example]; });
  }
  $("play").addEventListener("click", play);
  $("stop").addEventListener("click", stop);
  $("download").addEventListener("click", download);
  $("normalize").addEventListener("click", showNormalized);
  $("record").addEventListener("click", record);
  $("clone").addEventListener("click", createVoice);
  loadHealth();
  loadVoices();
});
