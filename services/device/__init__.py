"""The serving device's one owner: the codec's work (BiCodec decode, AP-BWE super-resolution) and every other
model call besides the LLM engine's.

Streams never call the codec models. They submit windows (`windows.py`) with a deadline, the moment their audio
would run out at real-time playback, and await the kept audio. `CodecScheduler` (`scheduler.py`) gathers every
stream's pending windows and runs them earliest-deadline-first as a few batched, bucketed calls on a
`DeviceRunner` (`runner.py`: the real models in one device thread; bench/standin has a cost-model stand-in).
The other model calls on the serving device (speaker vectors, reference encodes, CTC alignment) run through it too
(`CodecScheduler.run_model_call`). Admission (`admission.py`) asks the scheduler's own measure of headroom whether a
new stream fits. A stream's playback clock and pacing belong to delivery (`playback.py`): the scheduler reads its
deadline.
"""

from services.device.calls import ModelCallKind, SchedulerPolicy
from services.device.playback import PlaybackClock
from services.device.scheduler import CodecScheduler, StreamHandle
from services.device.windows import DecodeWindow, SRWindow

__all__ = [
    "CodecScheduler",
    "DecodeWindow",
    "ModelCallKind",
    "PlaybackClock",
    "SRWindow",
    "SchedulerPolicy",
    "StreamHandle",
]
