"""Dynamic batching: concurrent requests gathered into one ``strategy.search`` call.

Requests queue ``Pending`` items; one worker takes the oldest item's batch key (the
search variant, sample index and sampling settings: problems in one search share a
strategy instance) and gathers every queued item with that key, up to ``max_batch``. It
releases the batch when it is full, or once arrivals have paused for ``wait_s`` (counted
from the last arrival or the end of the previous batch, whichever is later), or when the
oldest item has waited ``max_wait_s`` for an idle worker. The batch runs on a single
search thread (the models are not shared between threads); while it runs, new requests
queue up and form the next one. Counting the pause from the end of the previous batch
lets the clients it just answered come back in time to join the next one, so groups of
clients that started apart merge instead of alternating in half-size batches. Both waits
grow with the previous batch's search time (at least ``PAUSE_SHARE`` and
``MAX_WAIT_SHARE`` of it): when a search takes tens of seconds, waiting a second for the
answered clients to return costs little and keeps the batches full.

A request whose client disconnects is cancelled: still queued, it leaves the queue and
frees its place; already in a running search, its result is dropped. A batch whose
search raises is retried one problem at a time, so a failure fails only the requests
whose own search fails (a problem's answer does not depend on its batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

#: Shares of the previous batch's search time the pause and the longest wait grow to.
PAUSE_SHARE = 0.02
MAX_WAIT_SHARE = 0.1

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFull(Exception):
    """The server holds ``max_queue`` problems already."""


@dataclass(eq=False)
class Pending(Generic[In, Out]):
    """One problem waiting for (or in) a search."""

    key: Hashable
    item: In
    future: asyncio.Future[Out]
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False


class Batcher(Generic[In, Out]):
    """Gathers queued problems into batches and runs them on one search thread.

    Args:
        run: ``run(key, items) -> outcomes``, one outcome per item, called on the search
            thread; it may raise (then each item is retried alone).
        max_batch: items per batch at most.
        wait_s: the pause in arrivals that releases a batch.
        max_wait_s: the longest an item waits for an idle worker to release its batch.
        max_queue: items queued or running at most (``submit`` raises ``QueueFull``).
        on_batch: called on the event loop with each batch's size (metrics).
    """

    def __init__(self, run: Callable[[Hashable, list[In]], Sequence[Out | BaseException]], *, max_batch: int, wait_s: float,
                 max_queue: int, max_wait_s: float | None = None,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self._run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_wait_s = max(wait_s, 10 * wait_s if max_wait_s is None else max_wait_s)
        self._last_arrival = 0.0
        self._idle_since = 0.0
        self._last_run_s = 0.0
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: list[Pending[In, Out]] = []
        self._running = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prm-search")
        self._task = asyncio.create_task(self._loop(), name="prm-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pending in self._queue:
            if not pending.future.done():
                pending.future.cancel()
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def depth(self) -> int:
        """Problems queued or in the running search."""
        return len(self._queue) + self._running

    # -- requests --------------------------------------------------------------------------
    def submit(self, items: Sequence[tuple[Hashable, In]]) -> list[Pending[In, Out]]:
        """Queue ``(key, item)`` pairs; all of them or none (``QueueFull``)."""
        if self._wakeup is None:
            raise RuntimeError("Batcher.start() was not called.")
        if self.depth + len(items) > self.max_queue:
            raise QueueFull(f"{self.depth} problems are queued or running (limit {self.max_queue}).")
        loop = asyncio.get_running_loop()
        made = [Pending(key, item, loop.create_future()) for key, item in items]
        self._queue.extend(made)
        self._last_arrival = time.monotonic()
        self._wakeup.set()
        return made

    def cancel(self, pendings: Sequence[Pending[In, Out]]) -> int:
        """Withdraw pendings (a client went away); returns how many left the queue unrun."""
        freed = 0
        for pending in pendings:
            pending.cancelled = True
            if pending in self._queue:
                self._queue.remove(pending)
                freed += 1
            if not pending.future.done():
                pending.future.cancel()
        return freed

    # -- the worker ------------------------------------------------------------------------
    async def _loop(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._gather()
            if batch:
                await self._execute(batch)

    async def _gather(self) -> list[Pending[In, Out]]:
        """The oldest item's batch, once full, or arrivals paused, or it waited ``max_wait_s``."""
        assert self._wakeup is not None
        while self._queue:
            oldest = self._queue[0]
            same = [p for p in self._queue if p.key == oldest.key]
            now = time.monotonic()
            quiet = now - max(self._last_arrival, self._idle_since)
            waited = now - max(oldest.enqueued, self._idle_since)
            pause, longest = self.waits()
            if len(same) >= self.max_batch or quiet >= pause or waited >= longest:
                batch = same[:self.max_batch]
                taken = set(map(id, batch))
                self._queue = [p for p in self._queue if id(p) not in taken]
                return batch
            self._wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(pause - quiet, longest - waited))
        return []

    def waits(self) -> tuple[float, float]:
        """The pause that releases a batch and the longest wait, now."""
        return (max(self.wait_s, PAUSE_SHARE * self._last_run_s),
                max(self.max_wait_s, MAX_WAIT_SHARE * self._last_run_s))

    async def _execute(self, batch: list[Pending[In, Out]]) -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        self._running = len(batch)
        logger.debug("prm-plugin serve: a batch of %d (%d more queued)", len(batch), len(self._queue))
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            outcomes = await loop.run_in_executor(self._executor, self._run_isolated, batch[0].key,
                                                  [p.item for p in batch])
        finally:
            self._running = 0
            self._idle_since = time.monotonic()
            self._last_run_s = self._idle_since - start
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():  # cancelled by its client meanwhile
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    def _run_isolated(self, key: Hashable, items: list[In]) -> list[Out | BaseException]:
        """Run the batch; if it raises, each item alone, so only failing items fail."""
        try:
            outcomes: list[Out | BaseException] = list(self._run(key, items))
            if len(outcomes) != len(items):
                raise RuntimeError(f"the batch returned {len(outcomes)} outcomes for {len(items)} problems")
            return outcomes
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            logger.warning("prm-plugin serve: a batch of %d failed (%s: %s); retrying each problem alone.",
                           len(items), type(exc).__name__, exc)
        out: list[Out | BaseException] = []
        for item in items:
            try:
                (one,) = self._run(key, [item])
                out.append(one)
            except Exception as exc:
                out.append(exc)
        return out
