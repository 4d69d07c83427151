"""Each key's share of admission (services/device/admission.py, "Each key's share"): when the device is short, the key
over its share of the open streams is refused and a key within its share is let in while another is over its own;
with no key over its share a refusing rule refuses as it always did. On a virtual clock with a fake scheduler:
decisions, order and counts, never wall timings."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

from bench.sim.virtual_loop import run_virtual
from services.device.admission import Admission, AdmissionDecision
from services.device.telemetry import SchedulerStats
from shared.metrics import ADMISSION_REFUSALS


class _Scheduler:
    """The figures Admission reads; `misses` > 0 is a device already short (rule 1 refuses); `owners`: open streams
    per key."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.active_streams = 4
        self.misses = 0
        self.stats = SchedulerStats()
        self.owners: Counter[str] = Counter()

    def busy_ratio(self) -> float:
        return 0.0

    def recent_misses(self, grace_s: float = 0.0) -> int:
        return self.misses

    def worst_recent_miss(self, grace_s: float = 0.0) -> float | None:
        return None  # no lateness figure: the plain reason

    def streams_by_owner(self) -> Counter[str]:
        return Counter(self.owners)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _admission(**settings: Any) -> tuple[Admission, _Scheduler, _Clock]:
    clock = _Clock()
    sched = _Scheduler(clock)
    return Admission(sched, clock=clock, ramp_floor=1000, **settings), sched, clock


def test_a_short_device_refuses_the_key_over_its_share_and_admits_the_one_within() -> None:
    adm, sched, clock = _admission()
    for _ in range(6):  # the flooding key's streams, admitted while the device kept up, still open
        assert adm.decide("flood").admit
        sched.owners["flood"] += 1
    sched.misses = 1  # its streams now miss their deadlines: the device is short
    alone = adm.decide("flood")  # no other key holds a stream: the rule refuses as it always did
    assert (alone.admit, alone.rule, alone.key_class) == (False, "misses", "within_share")
    victim = []
    for _ in range(3):
        victim.append(adm.decide("victim"))
        sched.owners["victim"] += 1
        clock.now += 0.5
    assert all(d.admit and d.key_class == "within_share" for d in victim)
    flood = adm.decide("flood")
    assert (flood.admit, flood.rule, flood.key_class, flood.retry_after_s) == (
        False,
        "misses",
        "over_share",
        2,
    )
    assert adm.refused_by_class == Counter({("misses", "within_share"): 1, ("misses", "over_share"): 1})
    assert adm.within_share_admitted == 3
    assert adm.view()["refused_by_key_class"] == {"misses/within_share": 1, "misses/over_share": 1}


def test_a_key_that_asked_often_one_at_a_time_is_within_its_share_while_another_floods() -> None:
    """B made a request every 0.2 s for a minute, one open at a time; A opens four at once and keeps asking, refused
    (a refusal comes back at once). A is over its share, B is not: B's admitted requests are its one open stream."""
    adm, sched, clock = _admission()
    for _ in range(300):
        assert adm.decide("steady").admit
        clock.now += 0.2
    for _ in range(4):
        assert adm.decide("flood").admit
    sched.owners.update({"flood": 4, "steady": 1})
    sched.misses = 1
    flood = [adm.decide("flood") for _ in range(20)]  # within a few ms
    assert not any(d.admit for d in flood) and flood[-1].key_class == "over_share"
    assert adm.decide("steady").admit
    clock.now += 1.5  # the flood stopped asking (its refusals are forgotten) and its streams ended
    sched.owners.update({"flood": -4})
    assert not adm.decide("steady").admit


def test_with_one_key_alone_or_keys_alike_a_short_device_refuses_as_it_always_did() -> None:
    adm, sched, clock = _admission()
    sched.owners.update({"only": 1})
    sched.misses = 1
    decision = adm.decide("only")
    assert (decision.admit, decision.rule, decision.key_class) == (False, "misses", "within_share")
    assert adm.decide(
        None
    ).admit  # keyless is a key of its own, holding nothing: "only" is over the share of two
    clock.now += 1.5  # the refusals of the last second are forgotten
    sched.owners.update({"": 1})
    assert not adm.decide(None).admit  # one stream each: nobody is over, the rule refuses
    clock.now += 1.5
    assert not adm.decide("only").admit
    assert adm.decide("third").admit  # a key with none is within its share while the two are over its own


def test_a_scheduler_without_owners_leaves_every_key_within_its_share() -> None:
    sched = SimpleNamespace(
        active_streams=4,
        stats=SchedulerStats(),
        busy_ratio=lambda: 0.0,
        recent_misses=lambda grace_s=0.0: 1,
        worst_recent_miss=lambda grace_s=0.0: 0.12,
    )
    adm = Admission(sched, clock=_Clock(), ramp_floor=1000)
    assert [adm.decide(k).key_class for k in ("a", "b")] == ["within_share", "within_share"]


def test_the_refusal_metric_names_rule_and_key_class_never_the_key() -> None:
    adm, sched, _ = _admission()
    sched.owners.update({"secret-key-id": 3, "other": 1})
    sched.misses = 1
    before = ADMISSION_REFUSALS.labels(rule="misses", key_class="over_share")._value.get()  # noqa: SLF001
    assert not adm.decide("secret-key-id").admit
    assert ADMISSION_REFUSALS.labels(rule="misses", key_class="over_share")._value.get() == before + 1  # noqa: SLF001
    samples = [s for metric in ADMISSION_REFUSALS.collect() for s in metric.samples]
    assert all(set(s.labels) == {"rule", "key_class"} for s in samples)
    assert not any("secret-key-id" in value for s in samples for value in s.labels.values())


def test_under_a_ramp_the_victim_does_not_queue_behind_the_flood_and_is_admitted_in_order() -> None:
    """The flood's callers wait out the ramp one by one (FIFO); the victim's, within their share while the flood is
    over its own, are let in at once, in their arrival order, while the flood's first caller is still waiting."""

    async def main() -> tuple[list[tuple[str, AdmissionDecision, float]], Admission]:
        loop = asyncio.get_running_loop()
        sched = _Scheduler(loop.time)
        sched.active_streams = 0
        adm = Admission(sched, clock=loop.time, ramp_floor=4, max_wait_s=0.25)
        for _ in range(4):  # the flood fills the ramp; it passes again 1 s later
            assert (await adm.admit(key="flood")).admit
        sched.owners.update({"flood": 4})
        await asyncio.sleep(0.8)
        out: list[tuple[str, AdmissionDecision, float]] = []
        t0 = loop.time()

        async def arrive(key: str, after_s: float) -> None:
            await asyncio.sleep(after_s)
            decision = await adm.admit(key=key)
            out.append((key, decision, loop.time() - t0))

        await asyncio.gather(
            *(arrive("flood", 0.001 * i) for i in range(3)),
            *(arrive("victim", 0.01 + 0.01 * i) for i in range(3)),
        )
        return out, adm

    out, adm = run_virtual(main)
    victim = [(d, t) for key, d, t in out if key == "victim"]
    assert [(d.admit, d.key_class, d.waited_s) for d, _ in victim] == [(True, "within_share", 0.0)] * 3
    assert [round(t, 3) for _, t in victim] == [0.01, 0.02, 0.03]  # at once, in arrival order
    flood = [(d, t) for key, d, t in out if key == "flood"]
    assert (
        min(t for _, t in flood) > 0.03
    )  # the flood's callers were still waiting when the victim was let in
    assert adm.refused.get("ramp", 0) + sum(d.admit for d, _ in flood) == 3
