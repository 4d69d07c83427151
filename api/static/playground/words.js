// Word highlighting: streams POST /v1/tts/generate with timestamps (JSON lines: timestamps, then that chunk's
// audio), plays the audio and highlights each word while it is heard. It reads the text, voice, sample rate,
// latency, speed and API key from the page, as Play does; Stop ends it; a refusal is shown next to the button
// (responseProblem and networkProblem come from playground.js).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  // Read by the end-to-end tests: every highlight change as [word index, audio clock seconds], and what was sent.
  const stats = { running: false, done: false, words: 0, audioSeconds: 0, highlights: [], error: null,
                  outcome: null, sampleRate: null, body: null };
  window.playgroundWords = stats;
  let current = null;  // the run under way: { controller, context, finish }

  function base64Samples(text) {
    const raw = atob(text);
    const view = new DataView(new ArrayBuffer(raw.length));
    for (let i = 0; i < raw.length; i++) view.setUint8(i, raw.charCodeAt(i));
    const out = new Float32Array(raw.length >> 1);
    for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
    return out;
  }

  function say(text, kind = "") {
    const line = $("words-status");
    line.textContent = text;
    line.className = kind;
  }

  async function playWords() {
    if (current) current.finish("stopped");  // a second press starts over
    const button = $("play-words");
    const stopButton = $("stop-words");
    const box = $("words");
    const rate = Number($("rate").value);
    const speed = Number($("speed").value);
    const body = { text: $("text").value, speaker: $("voice").value || undefined, stream: true, format: "pcm",
                   sample_rate: rate, latency: $("latency").value, speed: speed === 1 ? undefined : speed,
                   timestamps: "word" };
    Object.assign(stats, { running: true, done: false, words: 0, audioSeconds: 0, highlights: [], error: null,
                           outcome: null, sampleRate: rate, body });
    box.replaceChildren();
    say("Generating…", "busy");
    const spans = [];  // {start, end, el}
    const context = new AudioContext({ sampleRate: rate });
    await context.resume();
    const controller = new AbortController();
    const sources = new Set();
    let startAt = null;
    let samples = 0;
    let streamDone = false;
    let lit = -1;
    let ended = false;
    const finish = (outcome, message) => {
      if (ended) return;
      ended = true;
      controller.abort();
      for (const source of sources) { try { source.stop(); } catch (_) { /* already ended */ } }
      if (lit >= 0) spans[lit].el.classList.remove("current");
      context.close();
      Object.assign(stats, { running: false, done: true, outcome });
      if (current && current.context === context) current = null;
      button.disabled = false;
      stopButton.disabled = true;
      if (outcome === "failed") say(message, "error");
      else if (outcome === "stopped") say(`Stopped after ${stats.audioSeconds.toFixed(2)} s of audio.`);
      else say(`Done: ${stats.audioSeconds.toFixed(2)} s of audio, ${spans.length} words.`);
    };
    current = { controller, context, finish };
    button.disabled = true;
    stopButton.disabled = false;
    const tick = () => {
      if (ended) return;
      if (startAt !== null) {
        const t = context.currentTime - startAt;
        let index = -1;
        for (let i = 0; i < spans.length && spans[i].start <= t; i++) index = i;
        if (index !== lit) {
          if (lit >= 0) spans[lit].el.classList.remove("current");
          if (index >= 0) spans[index].el.classList.add("current");
          lit = index;
          stats.highlights.push([index, t]);
        }
        if (streamDone && t > samples / rate) { finish(stats.error ? "failed" : "done", stats.error); return; }
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    try {
      let response;
      try {
        response = await fetch("/v1/tts/generate", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                     signal: controller.signal });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new Error(networkProblem(error, "Speech with word timings"));
      }
      if (!response.ok) throw new Error(await responseProblem(response, "Speech with word timings"));
      say("Playing… (still generating)", "busy");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        const lines = buffered.split("\n");
        buffered = lines.pop();
        for (const line of lines.filter((l) => l.trim())) {
          const item = JSON.parse(line);
          if (item.type === "timestamps") {
            for (const word of item.words) {
              const el = document.createElement("span");
              el.textContent = word.text;
              box.append(el, " ");
              spans.push({ start: word.start, end: word.end, el });
            }
            stats.words = spans.length;
          } else if (item.type === "audio") {
            const pcm = base64Samples(item.audio);
            const buffer = context.createBuffer(1, pcm.length, rate);
            buffer.copyToChannel(pcm, 0);
            const source = context.createBufferSource();
            source.buffer = buffer;
            source.connect(context.destination);
            if (startAt === null) startAt = context.currentTime + 0.1;
            source.start(Math.max(startAt + samples / rate, context.currentTime));
            sources.add(source);
            source.onended = () => sources.delete(source);
            samples += pcm.length;
            stats.audioSeconds = samples / rate;
          } else if (item.type === "error") {
            throw new Error(`Speech with word timings failed: ${item.error.code}: ${item.error.message}`);
          }
        }
      }
    } catch (error) {
      if (ended) return;  // stopped: that said what happened
      stats.error = String(error.message || error);
      if (!samples) { finish("failed", stats.error); return; }  // nothing to play: say it now
      say(`Playing what arrived… ${stats.error}`, "error");
    } finally {
      streamDone = true;
      if (startAt === null) startAt = context.currentTime;
    }
  }

  function stopWords() {
    if (current) current.finish("stopped");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("play-words").addEventListener("click", playWords);
    $("stop-words").addEventListener("click", stopWords);
  });
})();
