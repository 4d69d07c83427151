"""What binds in a simulated load, term by term: the device's seconds by kind of work, rows per call, the API
processes' seconds, and admission's measures against what the device then did (`python -m bench sim load
--breakdown`).

`Ledger` observes the simulation's one `DeviceTimeline` (every engine step and codec call on the device's own
schedule) and the API processes' GIL time. Terms:

- `prefill`: newcomers' prompts in the engine step they join; `llm steps`: the rest of every step;
- `first windows` / `steady windows`: BiCodec rows of a stream's first decode window / every later one;
  `AP-BWE first` / `AP-BWE steady` the same at 48 kHz. A call holding both splits its seconds by rows;
- `host`: the API processes' busy seconds (all processes together; `host max` the busiest one's share).

Two spans: `onboarding`, from the first arrival until the last admitted stream's first audio (what a burst's first
audio waits on), and the whole run. And what the admitted streams need of the device at the most of them playing
at once (`playing_need`): the engine giving each request real time, the codec at the run's own seconds per audio
second; and what those seconds are made of (`codec_parts`). Admission's side: its codec cost per open stream-second
(dispatch to end, queueing behind engine steps included, as it is calibrated) and its LLM pace at each decision,
against the codec's own device seconds per stream-second and the pace the engine then gave.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.standin.cost_model import CostModel, EngineStep
from core.llm.engine_pace import IDS_PER_SECOND
from services.device.calls import Call
from services.device.telemetry import SchedulerStats
from services.pipeline.audio_output import NATIVE_RATE  # AP-BWE's input samples per second of audio

TERMS = (
    "prefill",
    "llm steps",
    "first windows",
    "steady windows",
    "AP-BWE first",
    "AP-BWE steady",
)
BICODEC_TERMS = TERMS[2:4]
APBWE_TERMS = TERMS[4:]


@dataclass
class _Use:
    term: str
    start: float
    end: float
    rows: float  # rows of this term in the call (engine: rows stepped; prefill: newcomers)
    call_rows: int  # every row of the call (padding excluded)
    padded_rows: int
    fixed_s: float  # the call's fixed cost share


@dataclass
class Ledger:
    model: CostModel
    uses: list[_Use] = field(default_factory=list)
    host: list[tuple[float, float]] = field(default_factory=list)
    decisions: list[tuple[float, float | None, float | None, int]] = field(default_factory=list)
    tokens: list[tuple[float, int, int]] = field(
        default_factory=list
    )  # (time, ids, rows) of each engine step
    _first: dict[int, object] = field(default_factory=dict)  # id -> window (held: an id is never reused)

    def mark_first(self, window: object) -> None:
        """`window` is its stream's first decode (or AP-BWE) window."""
        self._first[id(window)] = window

    def note_host(self, start: float, end: float) -> None:
        self.host.append((start, end))

    def note_decision(self, now: float, view: dict[str, Any], streams: int) -> None:
        # Set beside the codec's own seconds per open stream-second of every stream: read only where admission reads
        # that (codec_cost.py).
        per_stream_second = (
            view.get("codec_cost_basis") == "stream_second" and view.get("codec_cost_streams") == "every"
        )
        self.decisions.append(
            (
                now,
                view.get("codec_cost") if per_stream_second else None,
                view.get("llm_tokens_per_s_per_request"),
                streams,
            )
        )

    def observe(self, kind: str, start: float, end: float, detail: Any) -> None:
        """A `DeviceTimeline` observer."""
        if isinstance(detail, EngineStep):
            pre = detail.prefill_seconds
            if detail.newcomers:
                fixed = self.model.llm_prefill.fixed / 1000
                self.uses.append(
                    _Use("prefill", start, start + pre, detail.newcomers, detail.newcomers, 0, fixed)
                )
            self.uses.append(
                _Use(
                    "llm steps",
                    start + pre,
                    end,
                    detail.rows,
                    detail.rows,
                    0,
                    self.model.llm_step.fixed / 1000 if detail.rows else 0.0,
                )
            )
            self.tokens.append((end, detail.rows, detail.rows))
            return
        if not isinstance(detail, Call):
            return
        rows = len(detail.windows)
        first = sum(1 for w in detail.windows if id(w) in self._first)
        names = ("first windows", "steady windows") if kind == "decode" else ("AP-BWE first", "AP-BWE steady")
        fixed = (self.model.decode if kind == "decode" else self.model.sr).fixed / 1000
        seconds = end - start
        for name, n in zip(names, (first, rows - first), strict=True):
            if n:
                share = n / rows
                self.uses.append(
                    _Use(name, start, start + seconds * share, n, rows, detail.rows_padded, fixed * share)
                )
                start += seconds * share

    # ---- the tables
    def span_table(self, begin: float, end: float, stream_seconds: float) -> list[dict[str, Any]]:
        """One row per term over [begin, end): device seconds (and of them the calls' fixed parts), share of
        the span, calls, rows per call, padded rows per call, ms per call."""
        length = max(1e-9, end - begin)
        acc: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for u in self.uses:
            part = _overlap(u.start, u.end, begin, end)
            if part <= 0:
                continue
            frac = part / max(1e-12, u.end - u.start)
            a = acc[u.term]
            a["seconds"] += part
            a["fixed"] += u.fixed_s * frac
            a["calls"] += frac
            a["rows"] += u.rows * frac
            a["call_rows"] += u.call_rows * frac
            a["padded"] += u.padded_rows * frac
        out: list[dict[str, Any]] = []
        for term in TERMS:
            totals = acc.get(term)
            if totals is None:  # no call of this term in the span
                continue
            calls = max(1e-9, totals["calls"])
            out.append(
                {
                    "term": term,
                    "device_s": round(totals["seconds"], 3),
                    "fixed_s": round(totals["fixed"], 3),
                    "share": round(totals["seconds"] / length, 3),
                    "calls": round(totals["calls"]),
                    "rows_per_call": round(totals["call_rows"] / calls, 2),
                    "padded_rows_per_call": round(totals["padded"] / calls, 2) if totals["padded"] else None,
                    "ms_per_call": round(1000 * totals["seconds"] / calls, 2),
                    "ms_per_stream_s": round(1000 * totals["seconds"] / stream_seconds, 2)
                    if stream_seconds
                    else None,
                }
            )
        host = sum(_overlap(s, e, begin, end) for s, e in self.host)
        out.append(
            {
                "term": "host (API CPU)",
                "device_s": round(host, 3),
                "share": round(host / length, 3),
                "ms_per_stream_s": round(1000 * host / stream_seconds, 2) if stream_seconds else None,
            }
        )
        idle = length - sum(r["device_s"] for r in out if r["term"] in TERMS)
        out.append({"term": "device idle", "device_s": round(idle, 3), "share": round(idle / length, 3)})
        return out

    def admission_view(
        self, begin: float, end: float, codec_own_per_stream_s: float | None
    ) -> dict[str, Any]:
        """Admission's measures at its decisions within [begin, end) against what the device did there."""
        within = [d for d in self.decisions if begin <= d[0] < end]
        costs = [c for _, c, _, _ in within if c is not None]
        paces = [p for _, _, p, _ in within if p is not None]
        steps = [(t, rows) for t, rows, _ in self.tokens if begin <= t < end]
        # tokens per generating request per second over the span: steps / span (each step gives every row one id)
        pace_given = len(steps) / max(1e-9, end - begin) if steps else None
        return {
            "decisions": len(within),
            "decisions_unmeasured": sum(1 for _, c, _, _ in within if c is None),
            "codec_cost_admission": round(sum(costs) / len(costs), 5) if costs else None,
            "codec_cost_own": None if codec_own_per_stream_s is None else round(codec_own_per_stream_s, 5),
            "llm_pace_admission": round(sum(paces) / len(paces), 1) if paces else None,
            "llm_pace_given": None if pace_given is None else round(pace_given, 1),
        }


def _overlap(a: float, b: float, lo: float, hi: float) -> float:
    return max(0.0, min(b, hi) - max(a, lo))


def format_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """A Markdown table of `rows` (a missing value: blank)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if row.get(c) is None else str(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


BREAKDOWN_COLUMNS = (
    "term",
    "device_s",
    "fixed_s",
    "share",
    "calls",
    "rows_per_call",
    "padded_rows_per_call",
    "ms_per_call",
    "ms_per_stream_s",
)


def most_playing(plays: list[tuple[float, float]]) -> int:
    """The most of `plays` ([start, stop) each) under way at one time."""
    edges = sorted(
        [(start, 1) for start, _ in plays] + [(stop, -1) for _, stop in plays]
    )  # a stop before a start
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def playing_need(
    model: CostModel, streams: int, codec_seconds: float, audio_seconds: float
) -> dict[str, Any]:
    """Device seconds a second that `streams` streams need while they play together: the engine stepping every one of
    them 50 times a second (one id each per step: real time) at the model's step for that many rows, and the codec at
    `codec_seconds` of its own device time per `audio_seconds` made (the run's own rows per call, padding and context).
    Above 1 the device falls behind by the excess for every second they play together, and only the audio they were
    given ahead of time covers it, whatever order the work runs in."""
    engine = IDS_PER_SECOND * model.step_seconds(streams)
    per_audio_s = codec_seconds / audio_seconds if audio_seconds else None
    codec = None if per_audio_s is None else streams * per_audio_s
    return {
        "streams": streams,
        "engine_s_per_s": round(engine, 3),
        "codec_ms_per_audio_s": None if per_audio_s is None else round(1000 * per_audio_s, 2),
        "codec_s_per_s": None if codec is None else round(codec, 3),
        "device_s_per_s": None if codec is None else round(engine + codec, 3),
    }


def codec_parts(
    model: CostModel, terms: list[dict[str, Any]], stats: SchedulerStats
) -> dict[str, Any] | None:
    """The codec's own device seconds per audio second (`terms`: the whole run's span table), split into what the
    audio itself would cost (its kept tokens, and at 48 kHz its 16 kHz samples, at the model's cost per unit), the
    calls' fixed parts, and what BiCodec and AP-BWE spend beyond the kept audio: windows' context and look-ahead, the
    wave generator's reach, rounding to buckets and padded rows; AP-BWE's context and padding. With what makes them:
    window tokens per kept token, kept tokens per decode row, AP-BWE input samples per audio second and its padding.
    In ms per audio second; None without decoded audio, or with background jobs (their calls are in the terms, their
    tokens not in the kept ones)."""
    if stats.kept_tokens <= 0 or stats.background_calls:
        return None
    audio_s = stats.kept_tokens / IDS_PER_SECOND
    by_term = {r["term"]: r for r in terms}

    def spent(names: tuple[str, ...]) -> tuple[float, float]:
        """(fixed seconds, seconds beyond them) of these terms."""
        rows = [by_term[n] for n in names if n in by_term]
        return sum(r["fixed_s"] for r in rows), sum(r["device_s"] - r["fixed_s"] for r in rows)

    decode_fixed, decode_units = spent(BICODEC_TERMS)
    sr_fixed, sr_units = spent(APBWE_TERMS)
    own_decode = model.decode.per_unit * stats.kept_tokens / 1000
    sr_samples = stats.valid_work_by_kind["sr"]
    own_sr = model.sr.per_unit * NATIVE_RATE * audio_s / 1000 if sr_samples else 0.0

    def ms(seconds: float) -> float:
        return round(1000 * seconds / audio_s, 2)

    return {
        "audio_s": round(audio_s, 1),
        "total_ms": ms(decode_fixed + decode_units + sr_fixed + sr_units),
        "own_ms": ms(own_decode + own_sr),
        "fixed_ms": ms(decode_fixed + sr_fixed),
        "bicodec_beyond_ms": ms(decode_units - own_decode),
        "apbwe_beyond_ms": ms(sr_units - own_sr) if sr_samples else None,
        "window_tokens_per_kept": round(stats.valid_work_by_kind["decode"] / stats.kept_tokens, 2),
        "kept_tokens_per_decode_row": round(stats.kept_tokens / max(1, stats.rows_by_kind["decode"]), 1),
        "apbwe_samples_per_audio_s": round(sr_samples / audio_s) if sr_samples else None,
        # AP-BWE's seconds beyond the fixed parts against its rows' own samples at the model's rate, less one
        "apbwe_padding": round(sr_units / (model.sr.per_unit * sr_samples / 1000) - 1, 2)
        if sr_samples
        else None,
    }


# `playing_need`'s figures as table columns (`need_cells`), in order
NEED_COLUMNS = ("most playing at once", "engine at real time", "codec", "codec ms per audio second", "device")
_NEED_KEYS = ("streams", "engine_s_per_s", "codec_s_per_s", "codec_ms_per_audio_s", "device_s_per_s")


def need_cells(needs: list[dict[str, Any]]) -> list[str]:
    """Table cells for several runs' `playing_need`s (one per seed): each figure's min-max, one value where they agree;
    blank where no run has one."""
    cells = []
    for key in _NEED_KEYS:
        values = [n[key] for n in needs if n.get(key) is not None]
        if not values:
            cells.append("")
            continue
        low, high = (f"{v:.0f}" if key == "streams" else f"{v:.2f}" for v in (min(values), max(values)))
        cells.append(low if low == high else f"{low}-{high}")
    return cells


def breakdown(
    ledger: Ledger,
    streams: list[tuple[float, float | None, float | None]],
    end: float,
    audio_seconds: list[float],
    stats: SchedulerStats,
) -> dict[str, Any]:
    """The tables for `onboarding` (first arrival to the last first audio) and `run` (all of it), and what the
    streams need of the device at the most of them playing at once (`playing_need`; each plays from its first audio
    for its audio's length). `streams`: each admitted stream's (arrival, first audio, end); `audio_seconds`: the audio
    each was given, in the same order; `stats`: the scheduler's, for `codec_parts`."""
    spans: dict[str, tuple[float, float]] = {}
    if streams:
        begin = min(a for a, _, _ in streams)
        firsts = [f for _, f, _ in streams if f is not None]
        spans["onboarding"] = (begin, max(firsts) if firsts else end)
    spans["run"] = (min((a for a, _, _ in streams), default=0.0), end)
    out: dict[str, Any] = {}
    for name, (lo, hi) in spans.items():
        stream_s = sum(_overlap(a, e if e is not None else end, lo, hi) for a, _, e in streams)
        table = ledger.span_table(lo, hi, stream_s)
        codec = sum(r["device_s"] for r in table if r["term"] in TERMS[2:])
        out[name] = {
            "from_s": round(lo, 3),
            "to_s": round(hi, 3),
            "stream_seconds": round(stream_s, 2),
            "terms": table,
            "admission": ledger.admission_view(lo, hi, codec / stream_s if stream_s else None),
        }
        if name == "run":
            plays = [(f, f + s) for (_, f, _), s in zip(streams, audio_seconds, strict=True) if f is not None]
            out["playing_need"] = playing_need(ledger.model, most_playing(plays), codec, sum(audio_seconds))
            out["codec_parts"] = codec_parts(ledger.model, table, stats)
    return out


def print_breakdown(report: dict[str, Any]) -> None:
    """The breakdown of one report as Markdown tables (what `--breakdown` prints)."""
    spans = report.get("breakdown", {})
    for name in ("onboarding", "run"):
        span = spans.get(name)
        if span is None:
            continue
        print(
            f"\n{name}: {span['from_s']}-{span['to_s']} s, {span['stream_seconds']} stream-seconds open "
            f"({report['streams_admitted']} of {report['streams_requested']} admitted at "
            f"{report['sample_rate']} Hz)"
        )
        print(format_table(span["terms"], BREAKDOWN_COLUMNS))
        adm = span["admission"]
        print(
            f"admission at {adm['decisions']} decisions ({adm['decisions_unmeasured']} before the codec was "
            f"measured): codec s per stream-second {adm['codec_cost_admission']} read against "
            f"{adm['codec_cost_own']} of the codec's own device time; LLM pace read {adm['llm_pace_admission']} "
            f"tokens/s per request, given {adm['llm_pace_given']}",
            flush=True,
        )
    need = spans.get("playing_need")
    if need is not None:
        print(
            f"\n{need['streams']} playing at once (the most) need {need['device_s_per_s']} device seconds a second: "
            f"the engine at real time {need['engine_s_per_s']}, the codec {need['codec_s_per_s']} "
            f"({need['codec_ms_per_audio_s']} ms per audio second, as this run batched it)",
            flush=True,
        )
    parts = spans.get("codec_parts")
    if parts is not None:
        apbwe = (
            ""
            if parts["apbwe_beyond_ms"] is None
            else f" + AP-BWE beyond the kept samples {parts['apbwe_beyond_ms']} ({parts['apbwe_samples_per_audio_s']}"
            f" input samples per audio second, padding {parts['apbwe_padding']:.0%})"
        )
        print(
            f"the codec's {parts['total_ms']} ms per audio second ({parts['audio_s']} s decoded): the audio's own "
            f"{parts['own_ms']} + calls' fixed parts {parts['fixed_ms']} + BiCodec beyond the kept tokens "
            f"{parts['bicodec_beyond_ms']} ({parts['window_tokens_per_kept']} window tokens per kept one, "
            f"{parts['kept_tokens_per_decode_row']} kept per row){apbwe}",
            flush=True,
        )
