"""The model worker: steps run in order on one thread, and cancellation stops the work."""

import asyncio
import threading

from voxloop.providers.worker import ModelWorker


class Engine:
    """A blocking 'model' that produces items slowly and records what it did."""

    def __init__(self, n: int = 1000) -> None:
        self.n = n
        self.produced = 0
        self.closed = threading.Event()
        self.threads: set[str] = set()
        self.gate = threading.Event()  # each step waits here, so the test controls pace

    def run(self):
        try:
            for i in range(self.n):
                self.threads.add(threading.current_thread().name)
                self.gate.wait(timeout=5)
                self.gate.clear()
                self.produced += 1
                yield i
        finally:
            self.closed.set()


async def test_iterate_yields_everything_in_order():
    worker = ModelWorker("t")
    engine = Engine(5)
    engine.gate.set()

    async def drive():
        out = []
        async for item in worker.iterate(engine.run):
            out.append(item)
            engine.gate.set()
        return out

    assert await drive() == [0, 1, 2, 3, 4]
    assert len(engine.threads) == 1  # always the model's own thread
    worker.shutdown()


async def test_cancel_stops_the_engine_not_just_the_output():
    worker = ModelWorker("t")
    engine = Engine()
    seen = []

    async def consume():
        async for item in worker.iterate(engine.run):
            seen.append(item)

    task = asyncio.create_task(consume())
    for _ in range(3):  # let three items through
        engine.gate.set()
        while len(seen) < _ + 1:
            await asyncio.sleep(0.001)
    task.cancel()
    engine.gate.set()  # release whatever step was in flight
    await asyncio.gather(task, return_exceptions=True)
    assert await asyncio.to_thread(engine.closed.wait, 5), "engine iterator was not closed"
    produced_at_cancel = engine.produced
    # Nothing more is computed after the close: at most the one step that was in flight.
    assert produced_at_cancel <= len(seen) + 1
    engine.gate.set()
    await asyncio.sleep(0.05)
    assert engine.produced == produced_at_cancel
    worker.shutdown()


async def test_two_consumers_interleave_step_by_step():
    worker = ModelWorker("t")
    order = []

    def gen(tag):
        def run():
            for i in range(3):
                order.append((tag, i))
                yield i

        return run

    async def consume(tag):
        async for _ in worker.iterate(gen(tag)):
            await asyncio.sleep(0)

    await asyncio.gather(consume("a"), consume("b"))
    tags = [t for t, _ in order]
    # Neither consumer ran all its steps before the other started.
    assert tags.index("b") < len(tags) - tags[::-1].index("a") - 1
    worker.shutdown()


async def test_a_busy_model_does_not_hold_up_another_model():
    """The LLM stuck mid-answer must not delay STT: each model has its own worker."""
    llm_worker, stt_worker = ModelWorker("llm"), ModelWorker("stt")
    engine = Engine()  # blocks at every step until its gate opens

    async def long_answer():
        async for _ in llm_worker.iterate(engine.run):
            pass

    answer = asyncio.create_task(long_answer())
    transcript = await asyncio.wait_for(stt_worker.run(lambda: "hello"), timeout=5)
    assert transcript == "hello"
    assert not answer.done()  # the LLM is still busy with its first step
    answer.cancel()
    engine.gate.set()
    await asyncio.gather(answer, return_exceptions=True)
    llm_worker.shutdown()
    stt_worker.shutdown()
