"""Requests that arrive together, answered by one model call. Handlers put their inputs on an asyncio
queue and await the result; one loop takes the first waiting job and those that arrived while the
model was busy, lets others join it for at most `max_wait` seconds (or until `max_batch` inputs;
the wait only when requests come together: a lone client's request does not wait for company),
runs the batch in the one model thread (torch on a few cores is fastest one call at a time) and
hands each job its share of the results. The event loop never waits on the model, so /health and
new requests are answered while it works.

Jobs batch together only when their `key` is equal (the same kind of call with the same settings,
e.g. generations with the same temperature). If a batch fails, each of its jobs is run alone, so a
bad request gets its own error and the requests that came with it still get their results."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

RunBatch = Callable[[list[Any]], list[Any]]  # the inputs of the whole batch -> one result per input


@dataclass
class Job:
    key: Hashable
    items: list[Any]  # this request's inputs
    run: RunBatch
    future: asyncio.Future


class Batcher:
    """`await batcher.submit(key, items, run)` -> `run(items of the batch)`'s results for `items`."""

    def __init__(self, max_batch: int = 32, max_wait: float = 0.005):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (got {max_batch})")
        self.max_batch, self.max_wait = max_batch, max_wait
        self.queue: asyncio.Queue[Job] | None = None
        self.pending: collections.deque[Job] = collections.deque()  # taken from the queue, another key
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradtune-model")
        self.task: asyncio.Task | None = None
        self.batches = 0  # model calls made (the tests and the benchmark read these)
        self.last_jobs = 0  # requests in the last batch
        self.inputs = 0

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="gradtune-batcher")

    async def stop(self) -> None:
        """After the last request: end the loop and the model thread."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)

    async def submit(self, key: Hashable, items: list[Any], run: RunBatch) -> list[Any]:
        if self.queue is None:
            raise RuntimeError("the batcher is not started")
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(Job(key, list(items), run, future))
        return await future

    async def call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` in the model thread, alone, in its turn (a streamed generation)."""
        return (await self.submit(object(), [None], lambda _: [fn()]))[0]

    def _take(self, job: Job, batch: list[Job], size: int) -> int:
        """Add `job` to the batch if it fits (same key, room left); else keep it for a later batch."""
        if job.key == batch[0].key and size + len(job.items) <= self.max_batch:
            batch.append(job)
            return size + len(job.items)
        self.pending.append(job)
        return size

    async def _next_batch(self) -> list[Job]:
        loop = asyncio.get_running_loop()
        batch = [self.pending.popleft() if self.pending else await self.queue.get()]
        size = len(batch[0].items)
        for job in [self.pending.popleft() for _ in range(len(self.pending))]:  # waiting longest: first
            size = self._take(job, batch, size)
        while not self.queue.empty() and size < self.max_batch:  # arrived while the model worked
            size = self._take(self.queue.get_nowait(), batch, size)
        # wait for company only when requests come together (now, or in the last batch): a lone
        # client's request runs at once instead of paying the wait on every call
        together = len(batch) > 1 or self.last_jobs > 1
        deadline = loop.time() + (self.max_wait if together else 0.0)
        while size < self.max_batch and (left := deadline - loop.time()) > 0:
            try:
                job = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                break
            size = self._take(job, batch, size)
        self.last_jobs = len(batch)
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._run(batch)

    async def _run(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        items = [item for job in batch for item in job.items]
        try:
            results = await loop.run_in_executor(self.executor, batch[0].run, items)
            if len(results) != len(items):
                raise RuntimeError(f"a batch of {len(items)} inputs gave {len(results)} results")
        except Exception as err:  # noqa: BLE001 - handed to the requests, never ends the loop
            if len(batch) > 1:  # find the request that failed: each alone
                for job in batch:
                    await self._run([job])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(err)
            return
        self.batches += 1
        self.inputs += len(items)
        start = 0
        for job in batch:
            if not job.future.done():  # a client that went away cancelled its future
                job.future.set_result(results[start:start + len(job.items)])
            start += len(job.items)
