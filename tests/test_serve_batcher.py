"""The dynamic batcher alone: keys, sizes, waits, cohorts, cancellation, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable

import pytest

from prm_plugin.serve.batcher import Batcher, QueueFull


class Recorder:
    """A batch runner that records each batch and can take time or fail."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.batches: list[tuple[Hashable, list[str]]] = []
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(self, key: Hashable, items: list[str]) -> list[str]:
        with self.lock:
            self.batches.append((key, list(items)))
        time.sleep(self.seconds)
        if any(i.startswith("bad") for i in items):
            raise ValueError(f"bad item in {items}")
        return [f"done {i}" for i in items]


async def _with(batcher: Batcher, work):
    await batcher.start()
    try:
        return await work()
    finally:
        await batcher.stop()


def test_items_batch_by_key_in_arrival_order_up_to_max_batch():
    run = Recorder()
    batcher: Batcher[str, str] = Batcher(run, max_batch=3, wait_s=0.05, max_queue=100)

    async def work():
        pendings = batcher.submit([("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("a", "a4"), ("b", "b2")])
        return [await p.future for p in pendings]

    out = asyncio.run(_with(batcher, work))
    assert out == ["done a1", "done b1", "done a2", "done a3", "done a4", "done b2"]
    assert run.batches == [("a", ["a1", "a2", "a3"]), ("b", ["b1", "b2"]), ("a", ["a4"])]


def test_clients_that_started_apart_merge_into_full_batches():
    """Two groups of 4 clients, 50 ms apart, each client sending 3 requests one after another:
    after the first round the groups share batches instead of alternating in batches of 4."""
    run = Recorder(seconds=0.3)
    batcher: Batcher[str, str] = Batcher(run, max_batch=8, wait_s=0.02, max_wait_s=1.0, max_queue=100)

    async def client(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        for r in range(3):
            (pending,) = batcher.submit([("k", f"{name}/{r}")])
            assert await pending.future == f"done {name}/{r}"

    async def work():
        await asyncio.gather(*(client(f"c{i}", 0.0 if i < 4 else 0.05) for i in range(8)))

    asyncio.run(_with(batcher, work))
    assert [len(items) for _, items in run.batches] == [4, 8, 8, 4]


def test_after_a_long_search_the_batcher_waits_longer_for_slow_clients():
    """Clients that come back 10 ms apart after a 1 s search: the pause grows to 2% of the
    search time (20 ms), so they share a batch; with the 5 ms pause alone each would go alone."""
    run = Recorder(seconds=1.0)
    batcher: Batcher[str, str] = Batcher(run, max_batch=8, wait_s=0.005, max_wait_s=0.005, max_queue=100)

    async def client(i: int) -> None:
        for r in range(2):
            (pending,) = batcher.submit([("k", f"c{i}/{r}")])
            await pending.future
            await asyncio.sleep(0.01 * i)  # a slow client

    async def work():
        await asyncio.gather(*(client(i) for i in range(4)))

    asyncio.run(_with(batcher, work))
    assert [len(items) for _, items in run.batches] == [4, 4]
    assert batcher.waits() == pytest.approx((0.02, 0.1), rel=0.2)


def test_a_lone_item_waits_only_for_the_pause():
    run = Recorder()
    batcher: Batcher[str, str] = Batcher(run, max_batch=64, wait_s=0.05, max_queue=10)

    async def work():
        start = time.monotonic()
        (pending,) = batcher.submit([("k", "x")])
        await pending.future
        return time.monotonic() - start

    assert 0.04 <= asyncio.run(_with(batcher, work)) < 1.0


def test_a_failing_batch_is_retried_item_by_item():
    run = Recorder()
    batcher: Batcher[str, str] = Batcher(run, max_batch=8, wait_s=0.05, max_queue=10)

    async def work():
        pendings = batcher.submit([("k", "ok1"), ("k", "bad"), ("k", "ok2")])
        return await asyncio.gather(*(p.future for p in pendings), return_exceptions=True)

    ok1, bad, ok2 = asyncio.run(_with(batcher, work))
    assert (ok1, ok2) == ("done ok1", "done ok2")
    assert isinstance(bad, ValueError) and "bad" in str(bad)
    assert [items for _, items in run.batches] == [["ok1", "bad", "ok2"], ["ok1"], ["bad"], ["ok2"]]


def test_cancelled_items_leave_the_queue_and_are_never_run():
    run = Recorder(seconds=0.2)
    batcher: Batcher[str, str] = Batcher(run, max_batch=1, wait_s=0.0, max_queue=10)

    async def work():
        first, second, third = batcher.submit([("k", "first"), ("k", "second"), ("k", "third")])
        await asyncio.sleep(0.05)  # first is running; second and third wait
        assert batcher.depth == 3
        assert batcher.cancel([second]) == 1
        assert batcher.depth == 2 and second.future.cancelled()
        return await first.future, await third.future

    assert asyncio.run(_with(batcher, work)) == ("done first", "done third")
    assert [items for _, items in run.batches] == [["first"], ["third"]]


def test_a_full_queue_refuses_the_whole_request():
    batcher: Batcher[str, str] = Batcher(Recorder(seconds=0.2), max_batch=1, wait_s=0.0, max_queue=3)

    async def work():
        batcher.submit([("k", "a"), ("k", "b")])
        with pytest.raises(QueueFull, match="limit 3"):
            batcher.submit([("k", "c"), ("k", "d")])
        assert batcher.depth == 2  # nothing of the refused request was queued

    asyncio.run(_with(batcher, work))
