"""Dynamic micro-batching: concurrent requests share one onnxruntime call, then get their own results back.

One asyncio task collects waiting requests until ``max_batch_size`` texts are queued or the oldest
has waited ``max_wait_ms``; the merged texts run on a single inference thread (onnxruntime releases
the GIL, so the event loop keeps parsing requests meanwhile) and the results are sliced back by position,
request by request, in the order the texts were merged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("nlpkit.serve")

PredictFn = Callable[[list[str]], list[dict]]


class QueueFull(Exception):
    """The queue holds ``max_queue`` texts already; the caller should answer 503."""


class ShuttingDown(Exception):
    """The batcher was closed; no new work is accepted."""


@dataclass
class _Request:
    texts: Sequence[str]
    future: asyncio.Future
    arrived: float  # time.monotonic()


class MicroBatcher:
    """``await batcher.submit(texts)`` -> one prediction dict per text, in order.

    Args:
        predict: ``texts -> predictions`` (same length, same order); runs on the worker thread.
        max_batch_size: most texts per ``predict`` call (a larger single request runs alone).
        max_wait_ms: longest the oldest waiting request is held back for others to join.
        max_queue: most texts waiting; ``submit`` raises ``QueueFull`` beyond it instead of growing.
    """

    def __init__(self, predict: PredictFn, max_batch_size: int, max_wait_ms: float, max_queue: int):
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.queued_texts = 0
        self.stats = {"batches": 0, "texts": 0, "requests": 0, "rejected_queue_full": 0}
        self._waiting: collections.deque[_Request] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._worker: InferenceThread | None = None
        self._closing = False

    def start(self) -> None:
        """Start the batching task on the running event loop (one worker thread for inference)."""
        self._wakeup = asyncio.Event()
        self._worker = InferenceThread()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nlpkit-batcher")

    async def close(self) -> None:
        """Refuse new work, finish everything already queued, stop the worker thread."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
            self._task = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    @property
    def closing(self) -> bool:
        return self._closing

    async def submit(self, texts: Sequence[str]) -> list[dict]:
        if self._closing or self._task is None:
            raise ShuttingDown("the server is shutting down")
        if self.queued_texts + len(texts) > self.max_queue:
            self.stats["rejected_queue_full"] += 1
            raise QueueFull(
                f"{self.queued_texts} texts are already waiting (max_queue={self.max_queue}); retry later"
            )
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(texts, future, time.monotonic()))
        self.queued_texts += len(texts)
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill_or_timeout()
            batch = self._take_batch()
            try:
                await self._run_batch(batch)
            except Exception as err:  # noqa: BLE001 - a bug here must fail this batch, not stop the batcher
                log.exception("batcher error")
                for request in batch:
                    _resolve(request.future, error=err)

    async def _fill_or_timeout(self) -> None:
        """Wait until ``max_batch_size`` texts are queued or the oldest request's wait is over."""
        deadline = self._waiting[0].arrived + self.max_wait_s
        while self.queued_texts < self.max_batch_size and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take_batch(self) -> list[_Request]:
        """Oldest requests first, whole requests only, at most ``max_batch_size`` texts (at least one)."""
        batch = [self._waiting.popleft()]
        size = len(batch[0].texts)
        while self._waiting and size + len(self._waiting[0].texts) <= self.max_batch_size:
            request = self._waiting.popleft()
            batch.append(request)
            size += len(request.texts)
        self.queued_texts -= size
        return batch

    async def _run_batch(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        try:
            predictions = await self._worker.call(self._checked_predict, texts)
        except Exception:
            # One request must not fail its neighbours: rerun each alone so only the culprit gets the error.
            log.exception("batch of %d requests failed; retrying them one by one", len(batch))
            for request in batch:
                try:
                    result = await self._worker.call(self._checked_predict, request.texts)
                except Exception as err:  # noqa: BLE001 - handed to the request's handler
                    _resolve(request.future, error=err)
                else:
                    _resolve(request.future, result=result)
            return
        self.stats["batches"] += 1
        self.stats["texts"] += len(texts)
        self.stats["requests"] += len(batch)
        start = 0
        for request in batch:
            end = start + len(request.texts)
            _resolve(request.future, result=predictions[start:end])
            start = end

    def _checked_predict(self, texts: Sequence[str]) -> list[dict]:
        predictions = self.predict(list(texts))
        if len(predictions) != len(texts):
            raise RuntimeError(f"predictor returned {len(predictions)} results for {len(texts)} texts")
        return predictions


class InferenceThread:
    """One thread that runs the model, fed through a queue; results come back to the event loop.

    What ``run_in_executor`` on a one-thread pool does, minus its bookkeeping (work items, a
    concurrent future chained to an asyncio one): per batch, one queue put and one loop wake-up.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="nlpkit-infer", daemon=True)
        self._thread.start()

    async def call(self, fn: Callable, arg):
        """``await worker.call(fn, arg)``: ``fn(arg)`` on the thread; its exception re-raised here."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((fn, arg, future, loop))
        return await future

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, arg, future, loop = job
            try:
                result = fn(arg)
            except BaseException as err:  # noqa: BLE001 - re-raised in the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, err)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _resolve(
    future: asyncio.Future, result: list[dict] | None = None, error: Exception | None = None
) -> None:
    if future.done():  # the client went away and its handler was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
