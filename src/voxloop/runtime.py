"""Process-wide tuning of the Python runtime for a server under load.

Every session shares one event loop, so a garbage-collection pause stalls all of them at
once. Measured with 200 fake-provider sessions on the reference machine: Python's defaults
ran about 620 collections in 25 s, 1.0 s in all, with full (generation-2) pauses of up to
176 ms, each one straight onto every session's latency. After warm-up most objects on the
heap are the server's own (modules, models, settings) and live for ever; frozen, the
collector never walks them again. Collecting young objects less often leaves fewer, still
short, pauses: about 200 collections, 0.2 s in all, the longest 36 ms.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

YOUNG_THRESHOLD = 20_000  # allocations between young collections (Python's default: 700)


def tune_gc() -> None:
    """Call once the server is warm (models loaded): freeze what exists, then collect
    the young generation less often. The older generations keep Python's ratios, so
    cyclic garbage from sessions is still freed."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """`tune_gc` for a while (a benchmark's simulated users), then Python's settings back."""
    before = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
