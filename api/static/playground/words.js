// Word highlighting: streams POST /v1/tts/generate with timestamps (JSON lines: timestamps, then that chunk's
// audio), plays the audio and highlights each word while it is heard. Self-contained: it reads the text, the voice
// and the API key from the page and keeps its own audio context.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "spark-tts-playground-api-key";
  const RATE = 16000;
  // Read by the end-to-end test: every highlight change as [word index, audio clock seconds].
  const stats = { running: false, done: false, words: 0, audioSeconds: 0, highlights: [], error: null };
  window.playgroundWords = stats;

  function base64Samples(text) {
    const raw = atob(text);
    const view = new DataView(new ArrayBuffer(raw.length));
    for (let i = 0; i < raw.length; i++) view.setUint8(i, raw.charCodeAt(i));
    const out = new Float32Array(raw.length >> 1);
    for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
    return out;
  }

  async function playWords() {
    const button = $("play-words");
    const box = $("words");
    Object.assign(stats, { running: true, done: false, words: 0, audioSeconds: 0, highlights: [], error: null });
    button.disabled = true;
    box.replaceChildren();
    const spans = [];  // {start, end, el}
    const context = new AudioContext({ sampleRate: RATE });
    await context.resume();
    let startAt = null;
    let samples = 0;
    let streamDone = false;
    let current = -1;
    const tick = () => {
      if (startAt !== null) {
        const t = context.currentTime - startAt;
        let index = -1;
        for (let i = 0; i < spans.length && spans[i].start <= t; i++) index = i;
        if (index !== current) {
          if (current >= 0) spans[current].el.classList.remove("current");
          if (index >= 0) spans[index].el.classList.add("current");
          current = index;
          stats.highlights.push([index, t]);
        }
        if (streamDone && t > samples / RATE) {
          if (current >= 0) spans[current].el.classList.remove("current");
          stats.running = false; stats.done = true; button.disabled = false;
          context.close();
          return;
        }
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    const headers = { "Content-Type": "application/json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = `Bearer ${key}`;
    const body = { text: $("text").value, speaker: $("voice").value || undefined, stream: true, format: "pcm",
                   sample_rate: RATE, timestamps: "word" };
    try {
      const response = await fetch("/v1/tts/generate", { method: "POST", headers, body: JSON.stringify(body) });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
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
            const buffer = context.createBuffer(1, pcm.length, RATE);
            buffer.copyToChannel(pcm, 0);
            const source = context.createBufferSource();
            source.buffer = buffer;
            source.connect(context.destination);
            if (startAt === null) startAt = context.currentTime + 0.1;
            source.start(Math.max(startAt + samples / RATE, context.currentTime));
            samples += pcm.length;
            stats.audioSeconds = samples / RATE;
          } else if (item.type === "error") {
            throw new Error(item.error.message);
          }
        }
      }
    } catch (error) {
      stats.error = String(error.message || error);
      samples = 0;
    } finally {
      streamDone = true;
      if (startAt === null) startAt = context.currentTime;
    }
  }

  document.addEventListener("DOMContentLoaded", () => $("play-words").addEventListener("click", playWords));
})();
