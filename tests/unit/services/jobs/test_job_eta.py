"""A job's ETA is a number from its submission on: the audio its text will make times a real-time factor (the
service's, or the setting's) until a chapter of its own is done, then the rate its chapters measured."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.jobs.records import SPOKEN_CHARS_PER_S, ChapterRecord, JobOptions, JobRecord, job_view


def book(speed: float | None = None) -> JobRecord:
    return JobRecord(
        id="j",
        key_id="k",
        key_hash="h" * 64,
        title="Book",
        options=JobOptions(speed=speed),
        created_at=1.0,
        chapters=(
            ChapterRecord(1, "One", "x" * 1400),  # 100 s of audio at 14 characters a second
            ChapterRecord(2, "Two", "x" * 2800),
        ),
    )


def eta(job: JobRecord, **kwargs: float) -> float | None:
    return job_view(job, now=2.0, **kwargs)["progress"]["eta_seconds"]


def test_a_queued_job_has_an_estimate_from_its_text_and_the_real_time_factor() -> None:
    assert 4200 / SPOKEN_CHARS_PER_S == 300.0
    assert eta(book()) == 300.0  # real time by default
    assert eta(book(), eta_rtf=0.1) == 30.0  # a device ten times faster than real time
    assert eta(book(speed=1.5), eta_rtf=0.1) == 20.0  # faster speech: less audio to render


def test_the_estimate_counts_down_through_the_first_chapter() -> None:
    job = book()
    started = replace(job, status="running").with_chapter(replace(job.chapters[0], status="running"))
    half = started.with_chapter(replace(started.chapters[0], status="running", audio_seconds=50.0))
    assert eta(started, eta_rtf=0.2) == 60.0
    assert eta(half, eta_rtf=0.2) == 50.0  # 50 of its 100 seconds rendered


def test_a_chapter_done_replaces_the_assumed_rate_with_the_measured_one() -> None:
    job = replace(book(), status="running")
    done = job.with_chapter(replace(job.chapters[0], status="done", audio_seconds=100.0, render_seconds=7.0))
    assert eta(done, eta_rtf=1.0) == pytest.approx(14.0)  # 2800 characters at 1400 per 7 s


@pytest.mark.parametrize(("status", "expected"), [("done", 0.0), ("failed", None), ("cancelled", None)])
def test_an_ended_job(status: str, expected: float | None) -> None:
    assert eta(replace(book(), status=status)) == expected  # type: ignore[arg-type]
