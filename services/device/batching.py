"""Forming one call from the pending windows: the head's kind and length bucket, then more rows in deadline order
while the call's work, rows and padding stay within `SchedulerPolicy`'s bounds (the rules: scheduler.py's docstring).
Pure over its arguments but for the rows it takes out of `pending` and the wait reasons it writes on those it leaves.
"""

from __future__ import annotations

from typing import NamedTuple

from services.device.calls import Call, SchedulerPolicy
from services.device.queueing import PendingWindow
from services.device.windows import WaitReason


class FormedCall(NamedTuple):
    call: Call
    chosen: list[PendingWindow]
    unreached: WaitReason  # why the windows the scan never read wait


def form_call(pending: list[PendingWindow], first: int, policy: SchedulerPolicy, decision: int) -> FormedCall:
    """The call headed by `pending[first]` (alive; those before it are done). Removes the chosen windows, and the
    done ones the scan met, from `pending`; each live window the scan reads and leaves out gets its reason and
    `decision`. Only the list's head is read: up to `scan_limit` live windows, and no further once no later row
    could fit the call (a row never shrinks the call's length)."""
    n = len(pending)
    head = pending[first]
    kind, length = head.kind, head.bucket
    true_end = (
        head.true_end and length is None
    )  # the call's flag: exact-length true ends (a bucketed one rides)
    max_work = policy.max_work(kind)
    scan_limit = policy.scan_limit
    chosen = [head]
    live = 1  # live windows looked at, the head included
    i = first + 1
    reason: WaitReason
    if length is None:
        # The eager fallback or a stream's true end: exact length; rows of the same exact length may share it.
        units = head.units
        while (
            i < n
            and live < scan_limit
            and len(chosen) < policy.max_rows(kind)
            and (len(chosen) + 1) * units <= max_work
        ):
            p = pending[i]
            i += 1
            if p.future.done():
                continue
            live += 1
            if p.kind != kind:
                reason = "other_kind"
            elif p.units == units and p.true_end == true_end:
                chosen.append(p)
                continue
            else:
                reason = "length_mismatch"
            p.waiting, p.decided = reason, decision
        full = len(chosen) >= policy.max_rows(kind) or (len(chosen) + 1) * units > max_work
    else:
        valid = head.units
        max_rows = policy.max_rows(kind)
        max_pad_waste, pad_all_rows = policy.max_pad_waste, policy.pad_all_rows
        pinned = head.true_end  # a true end of exactly a bucket's length: the call's length may not grow
        while (
            i < n
            and live < scan_limit
            and len(chosen) < max_rows
            and policy.fits(kind, len(chosen) + 1, length)
        ):
            p = pending[i]
            i += 1
            if p.future.done():
                continue
            live += 1
            bucket = p.bucket
            if p.kind != kind:
                p.waiting, p.decided = "other_kind", decision
                continue
            if bucket is None:  # a true end of no bucket's length, or longer than every bucket: exact length
                p.waiting, p.decided = "length_mismatch", decision
                continue
            new_length = max(length, bucket)
            if (pinned and new_length > length) or (p.true_end and new_length != p.units):
                p.waiting, p.decided = "length_mismatch", decision
                continue  # a true end is never padded: its row must be exactly the call's length
            rows = len(chosen) + 1
            if not policy.fits(kind, rows, new_length):
                p.waiting, p.decided = "work_bound", decision
                continue
            # Padding bounds every row, raising the bucket or not: a 16-token row in a 192-token call would
            # cost 12x its work (at 250 simulated streams that made calls 1.41x their valid work).
            waste = 1 - (valid + p.units) / (rows * new_length)
            if waste > max_pad_waste and (new_length > length or pad_all_rows):
                p.waiting, p.decided = "padding_bound", decision
                continue
            chosen.append(p)
            length, valid = new_length, valid + p.units
            pinned = pinned or p.true_end
        full = len(chosen) >= max_rows or not policy.fits(kind, len(chosen) + 1, length)
    # What the scan did not reach waits behind a full call, or behind the more urgent windows it read.
    unreached: WaitReason = "work_bound" if full and live < scan_limit else "deadline_order"
    taken = {id(p) for p in chosen}  # all alive here: their ids are theirs
    pending[:i] = [p for p in pending[:i] if id(p) not in taken and not p.future.done()]
    rows_padded = len(chosen) if length is None else policy.batch_bucket(len(chosen))
    if kind == "decode":
        spans = tuple(p.span or (0, p.window.length) for p in chosen)
        call = Call(
            kind,
            tuple(p.window for p in chosen),
            length,
            rows_padded,
            true_end,
            spans,
            policy.prenet_margin,
        )
        return FormedCall(call, chosen, unreached)
    return FormedCall(
        Call(kind, tuple(p.window for p in chosen), length, rows_padded, true_end), chosen, unreached
    )
