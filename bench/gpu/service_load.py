"""Acceptance step 4, the service under load: the real app with the paced engine at the LLM step's measured rate.

`bench/bench_ttfa.py` serves the product app (`bench/serve_paced.py`: the service's own pipeline, codec scheduler,
SR and delivery; only the LLM is the paced engine) with the released-size codec and SR on the device, and drives
1, 8, 32 and 64 concurrent streams for the `balanced` and `lowest` schedules. Reported per level: client TTFA
p50/p95, server TTFA, underruns at 0 and 100 ms of client prebuffer next to a zero-latency service's, and the
codec scheduler's batching (mean rows per decode and per AP-BWE call) and its missed deadlines.

The engine rate is the transformers step rate at the top concurrency (`llm_step.rate_at`): conservative, since
vLLM's step is faster than eager transformers'. Below 50 tokens/s (real time for Spark's 50 semantic tokens a
second) a stream cannot keep up whatever the service does; the row then says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REALTIME_TOKENS_PER_S = 50.0


def run(device: str, quick: bool, rate: float | None) -> dict[str, Any]:
    levels = [1, 2] if quick else [1, 8, 32, 64]
    rate = rate or 200.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ttfa.json"
        command = [sys.executable, str(ROOT / "bench" / "bench_ttfa.py"), "--device", "cuda" if device.startswith("cuda") else "cpu",
                   "--codec", "demo" if quick else "released", "--rates", f"{rate:.1f}",
                   "--concurrency", ",".join(map(str, levels)), "--schedules", "balanced,lowest",
                   "--voices", "fixed", "--free-voices", "", "--before-voices", "", "--no-snr", "--no-plot",
                   "--repeats", "1", "--min-streams", str(max(levels)), "--out", str(out)]
        if quick:
            command += ["--quick", "--streams", "1"]
        print(" ".join(Path(c).name if c.startswith("/") else c for c in command), flush=True)
        completed = subprocess.run(command, cwd=ROOT, check=False)
        if completed.returncode != 0 or not out.is_file():
            return {"error": f"bench_ttfa exited {completed.returncode}", "rate": rate, "levels": levels}
        result = json.loads(out.read_text())
    rows = []
    for entry in result["summary"]:
        for level in levels:
            key = str(level) if str(level) in entry["ttfa_p50_s"] else level
            scheduler = (entry.get("scheduler") or {}).get(key) or {}
            rows.append({
                "schedule": entry["schedule"], "streams": level,
                "ttfa_p50_s": entry["ttfa_p50_s"].get(key), "ttfa_p95_s": entry["ttfa_p95_s"].get(key),
                "server_ttfa_p95_s": entry["server_ttfa_p95_s"].get(key),
                "underruns": entry["underruns"].get(key), "ideal_underruns": entry["ideal_underruns"].get(key),
                "mean_batch": scheduler.get("mean_batch"), "mean_decode_batch": scheduler.get("mean_decode_batch"),
                "mean_sr_batch": scheduler.get("mean_sr_batch"), "missed_deadlines": scheduler.get("missed_deadlines"),
            })
    return {"rate": rate, "below_realtime": rate < REALTIME_TOKENS_PER_S, "levels": levels, "rows": rows,
            "env": result.get("env", {})}
