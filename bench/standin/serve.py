"""The service with stand-ins injected: the app of `uvicorn --factory api:create_app`, nothing else changed.

    python -m bench.standin.serve --port 8000 --cost-model bench/cost_models/h100-tf32.json
    python -m bench.standin.serve --port 8000 --fault loop:40:1
    python -m bench.standin.serve --port 8001 --cost-model ... --hold-streams 1 --slots-file var/a.slots

Settings come from the environment (TTS_*) as for the normal server. `--cost-model` (or TTS_DEVICE_COST_MODEL)
serves on the device stand-in, `--fault` (or TTS_ENGINE_FAULT) wraps the engine in the fault engine; both
variables are read here and taken out of the environment, so the service's settings never see them.
`--hold-streams N` makes the device full at N open streams and `--slots-file` runs the input gate with its slot
count in that file, for the local router (bench/standin/fleet.py, bench/standin/router.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COST_MODEL_VAR = "TTS_DEVICE_COST_MODEL"
FAULT_VAR = "TTS_ENGINE_FAULT"


def build_app(  # noqa: ANN201 - an ASGI app
    cost_model: str | None,
    fault: str,
    *,
    hold_streams: int | None = None,
    slots_file: str | None = None,
    open_slots: int = 256,
):
    from api.app import create_app
    from bench.standin import runtime_factories
    from bench.standin.fleet import OpenRequests, SlotsFile, with_input_gate
    from bench.standin.fleet import hold_streams as hold
    from services.deployment.runtime import ModelRuntime
    from shared.settings import get_settings

    settings = get_settings()
    runtime = ModelRuntime(settings, **runtime_factories(cost_model, fault))
    requests = OpenRequests()
    if hold_streams is not None:
        hold(runtime, hold_streams, requests)
    app = requests.wrap(create_app(settings, runtime=runtime))
    if slots_file:
        return with_input_gate(app, lambda: runtime.admission, SlotsFile(slots_file), open_slots)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--cost-model",
        default=os.environ.pop(COST_MODEL_VAR, None) or None,
        help=f"device cost model JSON (bench/cost_models/); default ${COST_MODEL_VAR}",
    )
    parser.add_argument(
        "--fault",
        default=os.environ.pop(FAULT_VAR, ""),
        help=f"engine fault MODE[:K][:TRIES] (bench/standin/faulty_engine.py); default ${FAULT_VAR}",
    )
    parser.add_argument(
        "--hold-streams", type=int, default=None, help="the device is full at this many open streams"
    )
    parser.add_argument("--slots-file", default=None, help="run the input gate, its slot count in this file")
    parser.add_argument("--open-slots", type=int, default=256, help="the gate's slots while open")
    args = parser.parse_args(argv)
    import uvicorn

    # As scripts/serve: the app's own JSON logging (log_config=None keeps uvicorn from replacing it), pings
    # unanswered for 300 s before a socket is given up (pooled sockets are not read between turns), and the
    # service's HTTP protocol (api/http_protocol.py).
    uvicorn.run(
        build_app(
            args.cost_model,
            args.fault,
            hold_streams=args.hold_streams,
            slots_file=args.slots_file,
            open_slots=args.open_slots,
        ),
        host=args.host,
        port=args.port,
        access_log=False,
        log_config=None,
        ws_ping_timeout=300,
        http="api.http_protocol:HeadDeadline",
    )


if __name__ == "__main__":
    main()
