"""The server's runtime tuning, the event-loop lag probe, and the listener's audio queue."""

from __future__ import annotations

import asyncio
import gc

import numpy as np
from starlette.testclient import TestClient

from voxloop.bench.load import loop_lag
from voxloop.clock import VirtualClock
from voxloop.config.settings import Settings
from voxloop.hearing.utterance import AudioQueue
from voxloop.providers.stalls import Stalled, deadline
from voxloop.server import runtime
from voxloop.server.app import create_app

from test_protocol import fake_services


def test_a_server_app_freezes_the_heap_once_warm_and_a_plain_one_does_not():
    try:
        with TestClient(create_app(Settings(), services=fake_services(), warmup=False)):
            assert gc.get_freeze_count() == 0
        app = create_app(Settings(), services=fake_services(), warmup=False, tune_gc=True)
        with TestClient(app):
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_gc_tuned_unfreezes_afterwards():
    with runtime.gc_tuned():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_metrics_show_the_event_loop_lag():
    app = create_app(Settings(), services=fake_services(), warmup=False)
    with TestClient(app) as client:
        text = ""
        for _ in range(50):  # the first probe reports after 0.1 s
            text = client.get("/metrics").text
            if "voxloop_event_loop_lag_seconds_count 0.0" not in text:
                break
            client.portal.call(asyncio.sleep, 0.05)
    assert 'voxloop_event_loop_lag_seconds_bucket{le="0.01"}' in text
    assert "voxloop_event_loop_lag_seconds_count 0.0" not in text


def test_load_bench_reads_the_lag_of_its_own_run_from_the_histogram():
    inf = float("inf")
    before = {0.001: 10, 0.01: 10, 0.05: 10, 0.1: 10, inf: 10}  # an idle start
    after = {0.001: 60, 0.01: 90, 0.05: 105, 0.1: 109, inf: 110}
    lag = loop_lag(before, after)
    assert lag == {
        "probes": 100,
        "over_10ms": 0.2,
        "over_50ms": 0.05,
        "over_100ms": 0.01,
        "p50_under_ms": 1.0,
        "p99_under_ms": 100.0,
    }
    assert loop_lag(None, after) is None and loop_lag(after, after) is None


async def test_audio_queue_joins_what_waited_and_ends_after_close():
    queue = AudioQueue()
    queue.put(np.full(3, 1, np.float32))
    queue.put(np.full(2, 2, np.float32))
    got: list[np.ndarray] = []

    async def read() -> None:
        async for chunk in queue:
            got.append(chunk)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    assert [c.tolist() for c in got] == [[1, 1, 1, 2, 2]]  # one pass for both
    queue.put(np.full(1, 3, np.float32))
    queue.close()
    queue.put(np.full(1, 4, np.float32))  # after close: ignored
    await asyncio.wait_for(reader, 1)
    assert [c.tolist() for c in got] == [[1, 1, 1, 2, 2], [3]]


async def test_deadline_runs_out_on_virtual_time_without_a_task_per_use():
    clock = VirtualClock()
    tasks_before = len(asyncio.all_tasks())

    async def hang() -> None:
        async with deadline(clock, 5.0):
            assert len(asyncio.all_tasks()) == tasks_before + 1  # this one, no timer task
            await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await clock.advance(4.9)
    assert not task.done()
    await clock.advance(0.2)
    assert isinstance(task.exception(), Stalled)

    async with deadline(clock, 5.0):  # a block that finishes in time is left alone
        await asyncio.sleep(0)
    await clock.advance(10)
