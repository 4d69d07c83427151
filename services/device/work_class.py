"""Which kind of work a stream is, as the device's owner ranks it.

`live`: a listener is waiting (every route and socket). `background`: nobody is listening yet (long-form jobs);
it takes only device time live streams do not need, is paused first under load, and never counts against
admission's room for live streams.
"""

from typing import Literal

WorkClass = Literal["live", "background"]
WORK_CLASSES: tuple[WorkClass, ...] = ("live", "background")
