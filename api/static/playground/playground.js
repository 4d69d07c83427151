// Spark-TTS playground: streams PCM from POST /v1/tts/generate into Web Audio while it is being generated.
// No third-party code, no inline script (the page is served with a strict Content-Security-Policy).
// The helpers at the top (headers, setBusy, responseProblem, networkProblem) are shared with voices.js.
"use strict";

// Examples in the two languages Spark-TTS speaks (the API refuses `language: hi`: Hindi text is normalised, but the
// model has no Hindi voice).
const EXAMPLES = {
  en: "Hello! This is Spark-TTS, streaming speech while it is still being generated. It costs $5.50 and arrives on 15/03/2024.",
  zh: "你好！我有3个苹果，2024年3月5日，价格是12.5元，增长了50%。",
};
const KEY_STORAGE = "spark-tts-playground-api-key";
const KEY_CODES = new Set(["INVALID_API_KEY", "EXPIRED_API_KEY", "KEY_SUSPENDED"]);
const PEAK_MS = 10;  // the waveform keeps one peak per 10 ms of audio, so it can redraw the whole utterance cheaply

const $ = (id) => document.getElementById(id);
// One run per Play: its abort controller, the audio sources it scheduled and whether its stream has ended. A new
// Play or Stop ends the current run; a run that is no longer current never touches the page again.
const state = { context: null, run: null, chunks: [], peaks: [], sampleRate: 16000 };
// Read by the end-to-end tests: when audio was first scheduled, when the stream ended, when playback ended
// (performance.now()), and how many scheduled sources Stop or a new Play cut short.
const stats = {
  running: false, done: false, playing: false, startedAt: null, firstAudioAt: null, streamEndAt: null,
  playbackEndAt: null, streamSamples: 0, scheduledSamples: 0, ttfaMs: null, rtf: null, error: null,
  outcome: null, stoppedSources: 0, runs: 0, wavePeaks: 0,
};
window.playgroundStats = stats;

function headers(json = true) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function show(element, text, kind = "") {
  element.textContent = text;
  element.className = kind;  // "" | "busy" | "error"
}

function setStatus(text, kind = "") { show($("status"), text, kind); }

// Disable a button while its call is under way and say what is happening next to it.
function setBusy(button, busy) {
  button.disabled = busy;
  button.setAttribute("aria-busy", busy ? "true" : "false");
}

// The words for a refused request: key problems point at the key field, everything else names the error.
async function responseProblem(response, what) {
  let error = {};
  try { error = (await response.json()).error || {}; } catch (_) { /* not our envelope */ }
  if (response.status === 401 || (response.status === 403 && KEY_CODES.has(error.code))) {
    if (!sessionStorage.getItem(KEY_STORAGE)) return "This server needs an API key: enter your API key above.";
    return `The API key was not accepted (${error.message || response.statusText}): enter a valid API key above.`;
  }
  const detail = error.code ? `${error.code}: ${error.message}` : response.statusText;
  return `${what} failed: ${response.status} ${detail}`;
}

function networkProblem(error, what) {
  if (error && error.name === "TypeError") {
    return `${what} failed: could not reach the server (the network is down or the server is not running).`;
  }
  return `${what} failed: ${error && error.message ? error.message : error}`;
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

// ----------------------------------------------------------------------------------------- waveform
function addPeaks(samples) {
  const block = Math.max(1, Math.round(state.sampleRate * PEAK_MS / 1000));
  for (let i = 0; i < samples.length; i += block) {
    let peak = 0;
    for (let j = i; j < Math.min(samples.length, i + block); j++) peak = Math.max(peak, Math.abs(samples[j]));
    state.peaks.push(peak);
  }
  stats.wavePeaks = state.peaks.length;
}

// The whole utterance so far across the canvas width (it is rescaled as more arrives); no peaks: an empty canvas.
function drawWave() {
  const canvas = $("wave");
  const g = canvas.getContext("2d");
  g.fillStyle = "#0f1420";
  g.fillRect(0, 0, canvas.width, canvas.height);
  const peaks = state.peaks;
  if (!peaks.length) return;
  g.strokeStyle = "#4fd1c5";
  g.beginPath();
  const n = peaks.length;
  const w = canvas.width;
  for (let x = 0; x < w; x++) {
    const from = Math.floor(x * n / w);
    const to = Math.max(from + 1, Math.floor((x + 1) * n / w));
    let peak = 0;
    for (let i = from; i < to; i++) peak = Math.max(peak, peaks[i]);
    const h = Math.max(0.5, peak * canvas.height / 2);
    g.moveTo(x + 0.5, canvas.height / 2 - h);
    g.lineTo(x + 0.5, canvas.height / 2 + h);
  }
  g.stroke();
}

function s16ToFloat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

// ----------------------------------------------------------------------------------------- play / stop
function seconds(samples) { return `${(samples / state.sampleRate).toFixed(2)} s`; }

function endRun(run) {
  run.ended = true;
  run.controller.abort();
  for (const source of run.sources) {
    stats.stoppedSources += 1;
    try { source.stop(); } catch (_) { /* already ended */ }
  }
  run.sources.clear();
  if (state.run === run) {
    state.run = null;
    stats.playing = false;
    $("stop").disabled = true;
  }
}

// Called when a run's stream has ended and each time one of its sources ends: the run is over when both are done.
function maybeFinished(run) {
  if (state.run !== run || !run.streamDone || run.sources.size) return;
  stats.playing = false;
  stats.playbackEndAt = performance.now();
  state.run = null;
  $("stop").disabled = true;
  if (run.failure) { setStatus(run.failure, "error"); return; }
  stats.outcome = "done";
  setStatus(`Done: ${seconds(stats.streamSamples)} of audio.`);
}

function schedule(run, samples) {
  const buffer = state.context.createBuffer(1, samples.length, state.sampleRate);
  buffer.copyToChannel(samples, 0);
  const source = state.context.createBufferSource();
  source.buffer = buffer;
  source.connect(state.context.destination);
  run.cursor = Math.max(run.cursor, state.context.currentTime + 0.05);
  source.start(run.cursor);
  run.cursor += buffer.duration;
  run.sources.add(source);
  source.onended = () => { run.sources.delete(source); maybeFinished(run); };
  stats.scheduledSamples += samples.length;
  stats.playing = true;
}

async function play() {
  if (state.run) endRun(state.run);  // Play again: what is playing stops first
  const run = { controller: new AbortController(), sources: new Set(), cursor: 0, streamDone: false, ended: false,
                failure: null };
  state.run = run;
  stats.runs += 1;
  Object.assign(stats, { running: true, done: false, playing: false, startedAt: performance.now(), firstAudioAt: null,
                         streamEndAt: null, playbackEndAt: null, streamSamples: 0, scheduledSamples: 0, ttfaMs: null,
                         rtf: null, error: null, outcome: null });
  $("ttfa").textContent = $("rtf").textContent = $("audio-seconds").textContent = "–";
  state.sampleRate = Number($("rate").value);
  state.chunks = [];
  state.peaks = [];
  stats.wavePeaks = 0;
  drawWave();
  state.context = state.context || new AudioContext();
  await state.context.resume();
  $("stop").disabled = false; $("download").disabled = true;
  setStatus("Generating…", "busy");
  const speed = Number($("speed").value);
  const body = { text: $("text").value, speaker: $("voice").value || undefined, stream: true, format: "pcm",
                 sample_rate: state.sampleRate, latency: $("latency").value, speed: speed === 1 ? undefined : speed };
  let carry = new Uint8Array(0);
  let response = null;
  try {
    try {
      response = await fetch("/v1/tts/generate", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                   signal: run.controller.signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new Error(networkProblem(error, "Speech"));
    }
    if (!response.ok) throw new Error(await responseProblem(response, "Speech"));
    const reader = response.body.getReader();
    for (;;) {
      let part;
      try {
        part = await reader.read();
      } catch (error) {
        if (error.name === "AbortError" || run.ended) throw error;
        const kept = stats.streamSamples ? ` The ${seconds(stats.streamSamples)} of audio received so far can be downloaded.` : "";
        throw new Error(`The connection to the server was lost mid-stream (a network failure, or the server went away).${kept}`);
      }
      const { value, done } = part;
      if (done) break;
      let bytes = value;
      if (carry.length) { bytes = new Uint8Array(carry.length + value.length); bytes.set(carry); bytes.set(value, carry.length); }
      const even = bytes.length & ~1;
      carry = bytes.slice(even);
      if (!even) continue;
      const samples = s16ToFloat(bytes.subarray(0, even));
      stats.streamSamples += samples.length;
      state.chunks.push(samples);
      schedule(run, samples);
      if (stats.firstAudioAt === null) {
        stats.firstAudioAt = performance.now();
        stats.ttfaMs = stats.firstAudioAt - stats.startedAt;
        $("ttfa").textContent = `${stats.ttfaMs.toFixed(0)} ms`;
      }
      setStatus("Playing… (still generating)", "busy");
      addPeaks(samples);
      drawWave();
      $("audio-seconds").textContent = seconds(stats.streamSamples);
    }
    stats.streamEndAt = performance.now();
    const audioSeconds = stats.streamSamples / state.sampleRate;
    stats.rtf = audioSeconds > 0 ? (stats.streamEndAt - stats.startedAt) / 1000 / audioSeconds : null;
    $("rtf").textContent = stats.rtf === null ? "–" : stats.rtf.toFixed(3);
    // keep_voice.js offers "Keep this voice" for this request.
    document.dispatchEvent(new CustomEvent("tts:synthesized",
                                           { detail: { requestId: response.headers.get("X-Server-Request-ID") } }));
    if (run.sources.size) setStatus("Playing…", "busy");
  } catch (error) {
    if (state.run !== run) return;  // stopped, or a new Play took over: that one owns the page now
    stats.error = String(error.message || error);
    stats.outcome = "failed";
    run.failure = stats.error;
    if (!run.sources.size) setStatus(stats.error, "error");  // else said when the received audio has played
    else setStatus(`Playing what arrived… ${stats.error}`, "error");
  } finally {
    if (state.run === run) {
      run.streamDone = true;
      stats.running = false;
      stats.done = true;
      $("download").disabled = state.chunks.length === 0;
      maybeFinished(run);
    } else if (run.ended) {
      stats.running = false;
      stats.done = true;
    }
  }
}

function stop() {
  const run = state.run;
  if (!run) return;
  endRun(run);
  stats.running = false;
  stats.done = true;
  stats.outcome = "stopped";
  setStatus(stats.streamSamples ? `Stopped after ${seconds(stats.streamSamples)} of audio.` : "Stopped.");
  $("download").disabled = state.chunks.length === 0;
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
  const button = $("normalize");
  setBusy(button, true);
  setStatus("Normalising…", "busy");
  try {
    let response;
    try {
      response = await fetch("/v1/tts/normalize", { method: "POST", headers: headers(),
                                                     body: JSON.stringify({ text: $("text").value }) });
    } catch (error) {
      setStatus(networkProblem(error, "Normalising"), "error");
      return;
    }
    if (!response.ok) { setStatus(await responseProblem(response, "Normalising"), "error"); return; }
    const body = await response.json();
    $("normalized").textContent = `${body.normalized}\n(scripts: ${body.languages.join(", ")})`;
    const list = $("chunks");
    list.replaceChildren(...body.chunks.map((chunk) => { const li = document.createElement("li"); li.textContent = chunk; return li; }));
    setStatus(`Normalised: ${body.chunks.length} chunk(s).`);
  } finally {
    setBusy(button, false);
  }
}

// ----------------------------------------------------------------------------------------- wiring
document.addEventListener("DOMContentLoaded", () => {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    if (key.value) sessionStorage.setItem(KEY_STORAGE, key.value); else sessionStorage.removeItem(KEY_STORAGE);
    document.dispatchEvent(new CustomEvent("playground:key"));  // voices.js reloads the voice list with it
  });
  for (const button of document.querySelectorAll("[data-example]")) {
    button.addEventListener("click", () => { $("text").value = EXAMPLES[button.dataset.example]; });
  }
  $("play").addEventListener("click", play);
  $("stop").addEventListener("click", stop);
  $("download").addEventListener("click", download);
  $("normalize").addEventListener("click", showNormalized);
  drawWave();
  loadHealth();
});
