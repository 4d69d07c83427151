"""Real speech with known pauses, made with espeak-ng (a Debian package): phrases are spoken one by one, trimmed to
their voiced extent and joined with silences of known length, so every phrase's true start and end are known.
`edge_errors` measures an alignment against them, `streamed` runs the incremental aligner the way the pipeline
feeds it."""

from __future__ import annotations

import io
import re
import subprocess
import wave
from dataclasses import dataclass

import numpy as np
import soxr

from core.align.incremental import IncrementalEstimate
from core.align.rates import MeasuredRate
from core.align.types import WordSpan
from core.align.units import split_words

RATE = 16_000
TRIM_LEVEL = 1e-3  # espeak-ng's silence is digital zero; anything above this is speech

PHRASES = {
    "en": [
        "The quick brown fox,",
        "jumps over the lazy dog,",
        "while the farmer sleeps.",
        "Every morning the baker,",
        "sells fresh bread and cakes.",
    ],
    "hi": ["सुबह की ठंडी हवा में,", "गाँव के लोग", "खेतों की ओर चलते हैं।", "बच्चे हँसते हुए,", "स्कूल जाते हैं।"],
    "zh": ["今天天气很好，", "我们去公园散步，", "然后一起吃午饭。", "孩子们在草地上，", "快乐地玩耍。"],
}
# A second set per language: short phrases, numbers said as words, a question.
MORE_PHRASES = {
    "en": ["Hello there.", "How are you today?", "I bought twenty five apples,", "and three ripe bananas."],
    "hi": ["नमस्ते।", "आप कैसे हैं?", "मैंने पच्चीस सेब खरीदे,", "और तीन पके केले।"],
    "zh": ["你好。", "你今天好吗？", "我买了二十五个苹果，", "还有三根香蕉。"],
}
# Chinese without punctuation, five texts of four clauses: which character ends at a pause the text does not announce
# is where the words are (a speaker pauses between words, not inside one: core/align/units.py `inside_words`).
CHINESE_CLAUSES = [
    [
        "我昨天晚上看了一部电影",
        "故事讲的是一个小男孩",
        "他在海边找到了一只受伤的小鸟",
        "后来他们成为了好朋友",
    ],
    ["这家餐厅的菜非常好吃", "服务员也很热情", "我们下次还会再来", "价格也比较合理"],
    ["明天上午九点开会", "请大家准时参加", "会议室在三楼", "记得带上笔记本电脑"],
    ["春天来了", "花园里开满了鲜花", "小鸟在树上唱歌", "人们都出来散步了"],
    ["他每天早上跑步", "然后去图书馆看书", "下午和朋友打篮球", "晚上在家写作业"],
]
VOICES = {"en": "en", "hi": "hi", "zh": "cmn"}
_FINAL_PUNCTUATION = re.compile(r"[,.!?\u0964\uff0c\u3002\uff1f]+$")


def unpunctuated(phrases: list[str]) -> list[str]:
    """The phrases without their final punctuation: the same pauses, which the text no longer announces."""
    return [_FINAL_PUNCTUATION.sub("", phrase) for phrase in phrases]


PAUSES_S = (0.25, 0.4, 0.3, 0.5)  # between consecutive phrases
EDGE_S = 0.2  # silence before the first and after the last phrase


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # 16 kHz mono float32
    text: str  # the phrases joined by spaces
    phrases: list[tuple[str, float, float]]  # (phrase, true start s, true end s)


def espeak(text: str, voice: str, speed: int | None = None) -> np.ndarray:
    """16 kHz float audio of `text` spoken by espeak-ng (at `speed` words per minute, else the voice's own), trimmed to
    its voiced extent."""
    options = ["-s", str(speed)] if speed else []
    wav_bytes = subprocess.run(
        ["espeak-ng", "-v", voice, *options, "--stdout", text], capture_output=True, check=True, timeout=60
    ).stdout
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768
    audio = np.asarray(soxr.resample(samples, rate, RATE), np.float32)
    loud = np.flatnonzero(np.abs(audio) > TRIM_LEVEL)
    return audio[loud[0] : loud[-1] + 1]


def make_speech(
    language: str,
    phrases: list[str] | None = None,
    pauses: tuple[float, ...] = PAUSES_S,
    speed: int | None = None,
) -> Speech:
    phrases = phrases or PHRASES[language]
    parts = [np.zeros(int(EDGE_S * RATE), np.float32)]
    truth = []
    at = EDGE_S
    for index, phrase in enumerate(phrases):
        clip = espeak(phrase, VOICES[language], speed)
        truth.append((phrase, at, at + len(clip) / RATE))
        parts.append(clip)
        at += len(clip) / RATE
        gap = pauses[index % len(pauses)] if index < len(phrases) - 1 else EDGE_S
        parts.append(np.zeros(int(round(gap * RATE)), np.float32))
        at += int(round(gap * RATE)) / RATE
    return Speech(np.concatenate(parts), " ".join(phrases), truth)


# The streaming decoder's pieces (core.streaming's schedule): 25, 50, 100, then 200 tokens of 20 ms.
PIECES_S = (0.5, 1.0, 2.0, 4.0)


def streamed(audio: np.ndarray, words: list[str], rate: MeasuredRate | None = None) -> list[WordSpan]:
    """The incremental aligner's spans, fed the audio in the decoder's pieces, then finished. `rate`: the voice's
    rate measured on its earlier output (`voice_rate`), as the service starts a stream from it."""
    return _stream(audio, words, rate)[0]


def voice_rate(speech: Speech) -> MeasuredRate | None:
    """The rate the service remembers for the voice after it spoke `speech` (one text chunk, streamed)."""
    aligner = _stream(speech.audio, split_words(speech.text), None)[1]
    return MeasuredRate(aligner.rate, aligner.voiced_s) if aligner.voiced_s else None


def _stream(
    audio: np.ndarray, words: list[str], rate: MeasuredRate | None
) -> tuple[list[WordSpan], IncrementalEstimate]:
    aligner = IncrementalEstimate(words, prior=rate)
    spans: list[WordSpan] = []
    at, piece = 0, 0
    while at < len(audio):
        size = int(PIECES_S[min(piece, len(PIECES_S) - 1)] * RATE)
        spans += aligner.feed(audio[at : at + size])
        at, piece = at + size, piece + 1
    return spans + aligner.finish(), aligner


def edge_errors(speech: Speech, spans: list[WordSpan]) -> list[float]:
    """Seconds between each phrase's true start and its first word's start, and its true end and its last word's end
    (the word-group boundaries a pause makes)."""
    errors, at = [], 0
    for phrase, start, end in speech.phrases:
        count = len(split_words(phrase))
        errors += [abs(spans[at].start - start), abs(spans[at + count - 1].end - end)]
        at += count
    return errors
