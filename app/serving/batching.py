"""Micro-batching for serve.py: the images of concurrent requests gathered into one model call
(up to `max_batch`, waiting at most `max_wait` seconds after the first), so onnxruntime or torch
runs one batch where it would run many single images. One batch is in the model at a time; the
requests arriving meanwhile make the next one. Each image comes with the model (`key`) it was
brought to the input of: a batch that straddles a reload runs as one call per model."""
from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np
from fastapi.concurrency import run_in_threadpool


class MicroBatcher:
    def __init__(self, predict: Callable[[object, np.ndarray], list], max_batch: int, max_wait: float,
                 on_batch: Callable[[int], None] = lambda size: None):
        """`predict(key, batch)`: a stacked uint8 batch for the model `key` -> one answer per image
        (run in the thread pool); `on_batch(size)`: told each batch's size (serve.py's /metrics).
        A batch waits only while other requests are on their way (`coming`, counted by the server
        from their arrival): a lone request is answered at once, as without batching (waiting
        2 ms for nobody cost 1.7x in single-request latency, bench_serve.py)."""
        self.predict, self.max_batch, self.max_wait, self.on_batch = predict, max_batch, max_wait, on_batch
        self.coming = 0  # requests that arrived and have not been answered yet
        self._loop = None

    async def submit(self, key, model_input: np.ndarray):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first call, or a new event loop (a test client's): start the gatherer there
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._gather())
        answer = loop.create_future()
        await self._queue.put((key, model_input, answer))
        return await answer

    async def _gather(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = self._loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                left = deadline - self._loop.time()
                if (left <= 0 or self.coming <= len(batch)) and self._queue.empty():
                    break
                try:
                    batch.append(self._queue.get_nowait() if left <= 0 else
                                 await asyncio.wait_for(self._queue.get(), left))
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
            waiting = [item for item in batch if not item[2].cancelled()]  # a client that hung up
            if waiting:
                self.on_batch(len(waiting))
            for key in dict.fromkeys(item[0] for item in waiting):  # one call per model, in arrival order
                await self._run(key, [item for item in waiting if item[0] is key])

    async def _run(self, key, batch: list) -> None:
        try:
            answers = await run_in_threadpool(self.predict, key, np.stack([image for _, image, _ in batch]))
        except Exception as err:  # noqa: BLE001 - every waiting request gets the failure, the gatherer lives on
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(err)
            return
        for (_, _, answer), result in zip(batch, answers):
            if not answer.done():
                answer.set_result(result)
