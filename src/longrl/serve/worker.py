"""The thread that owns the served model: it runs generation batches and weight reloads in arrival order.

    worker = ModelWorker(model, tokenizer, "my-model", "/models/x")
    groups = worker.generate(job)                  # blocks; concurrent callers are batched together
    task = worker.submit(job)                      # or: QueueFull when too many prompts wait already
    worker.cancel(task)                            # its client left: dropped if queued, stopped if decoding
    worker.reload("/runs/x/served/step-3", "step-3")   # between batches, never during one
    worker.close()

HTTP handler threads hand jobs over and wait; the worker takes the oldest job, waits while more
keep arriving (`batch_window_s` at a time, `max_wait_s` at most: the G-sample requests of one RL
step come as a burst), and decodes it with every queued job of the same sampling parameters and
`n` in one `SharedPrefixGenerator.generate` call (groups from different requests share the batch;
each keeps its own seed, so its tokens are the same as when run alone). A reload waits for the jobs
queued before it and holds back those queued after it, so every reply comes from one set of
weights, named by `version`.

Admission is counted in prompts: at most `max_queued_prompts` prompts wait (a request of P prompts
counts P); `submit` raises QueueFull past that, which the server answers with HTTP 429. A cancelled
job leaves the queue at once; a batch whose every job was cancelled stops at its next decode step
(`SharedPrefixGenerator.generate(stop=...)`), as does everything when the worker closes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import torch

from longrl.engine.generate import GenerationStopped, GroupRollout, SharedPrefixGenerator
from longrl.models.weights import load_weights
from longrl.serve.limits import MAX_QUEUED_PROMPTS
from longrl.serve.protocol import Job

INITIAL_VERSION = "default"   # SGLang's weight version before any reload


class QueueFull(Exception):
    """Too many prompts wait already: try again later (HTTP 429)."""


@dataclass(eq=False)
class _Task:
    job: Job | None            # a generation, or None for a reload
    future: Future
    reload: tuple[str, str | None] | None = None   # (path, version) of a reload
    abandoned: bool = False    # its client went away: drop it, stop its batch once all of the batch has


class ModelWorker:
    """One thread runs the model; see the module docstring.

    Args:
        model, tokenizer: what is served (eval mode is set here).
        name: the served model name; path: where its weights came from (then: the folder loaded last).
        groups_per_batch: prompts decoded together (the generator's batch).
        decode: the generator's decode path (auto: a CUDA graph on CUDA).
        batch_window_s, max_wait_s: the first job of a batch waits while others keep arriving,
            batch_window_s at a time, at most max_wait_s.
        max_batch_prompts: most prompts taken into one generate() call.
        max_queued_prompts: most prompts waiting (not yet decoding); `submit` raises QueueFull past it.
    """

    def __init__(self, model, tokenizer, name: str, path: str, groups_per_batch: int = 8, decode: str = "auto",
                 batch_window_s: float = 0.005, max_wait_s: float = 0.05, max_batch_prompts: int = 64,
                 max_queued_prompts: int = MAX_QUEUED_PROMPTS):
        self.model, self.tokenizer, self.name, self.path = model.eval(), tokenizer, name, path
        self.source = path                             # where the model (and its tokenizer) came from
        self.generator = SharedPrefixGenerator(model, tokenizer.pad_token_id, groups_per_batch=groups_per_batch,
                                               decode=decode)
        self.batch_window_s, self.max_batch_prompts, self.max_wait_s = batch_window_s, max_batch_prompts, max_wait_s
        self.max_queued_prompts = max_queued_prompts
        self.version = INITIAL_VERSION
        self.batches = 0                               # generate() calls made (tests and stats)
        self.stopped = 0                               # generate() calls stopped because their clients left
        self.queued_prompts = 0                        # prompts waiting now
        self.decoding = 0                              # prompts of the batch being decoded now
        self._tasks: deque[_Task] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="longrl-serve-model", daemon=True)
        self._thread.start()

    def generate(self, job: Job) -> tuple[list[GroupRollout], str]:
        """The job's groups (one per prompt) and the weight version that produced them."""
        return self.submit(job).future.result()

    def submit(self, job: Job) -> _Task:
        """Queue `job`; its `future` gives (groups, version). Raises QueueFull when admitting its prompts
        would put more than `max_queued_prompts` in the queue (a lone request of more prompts than that
        is admitted into an empty queue)."""
        return self._submit(_Task(job, Future()))

    def cancel(self, task: _Task) -> None:
        """The client of `task` went away: drop it from the queue, or mark it so its batch stops early."""
        with self._ready:
            task.abandoned = True
            try:
                self._tasks.remove(task)
            except ValueError:
                return                                 # decoding (or done): the batch asks `_abandoned`
            self.queued_prompts -= len(task.job.prompts) if task.job is not None else 0
            task.future.cancel()

    def reload(self, path: str, version: str | None) -> str:
        """Load the safetensors folder `path` into the model; the version now served (unchanged when None)."""
        return self._submit(_Task(None, Future(), (path, version))).future.result()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join(timeout=60)

    def _submit(self, task: _Task) -> _Task:
        with self._ready:
            if self._closed:
                raise RuntimeError("the model worker is closed")
            if task.job is not None:
                size = len(task.job.prompts)
                if self.queued_prompts and self.queued_prompts + size > self.max_queued_prompts:
                    raise QueueFull(f"{self.queued_prompts} prompts are waiting for the model already (at most "
                                    f"{self.max_queued_prompts}); retry later")
                self.queued_prompts += size
            self._tasks.append(task)
            self._ready.notify_all()
        return task

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._tasks and not self._closed:
                    self._ready.wait()
                if self._closed:
                    for task in self._tasks:
                        if task.future.set_running_or_notify_cancel():
                            task.future.set_exception(RuntimeError("the server is shutting down"))
                    return
                first = self._tasks[0]
            if first.job is None:
                with self._ready:
                    self._tasks.popleft()
                if first.future.set_running_or_notify_cancel():
                    self._run_reload(first)
                continue
            self._wait_for_company()
            batch = self._take_batch()
            if batch:
                self._run_batch(batch)

    def _wait_for_company(self) -> None:
        """Let a burst of requests (one per group of an RL step) arrive: wait while they keep coming,
        `batch_window_s` at a time, at most `max_wait_s` in all."""
        if not self.batch_window_s:
            return
        deadline = time.monotonic() + self.max_wait_s
        with self._ready:
            seen = len(self._tasks)
        while time.monotonic() < deadline:
            time.sleep(self.batch_window_s)
            with self._ready:
                now = len(self._tasks)
            if now == seen:
                return
            seen = now

    def _take_batch(self) -> list[_Task]:
        """The oldest job and the queued jobs it can share a batch with (none from beyond a reload);
        empty when the queue no longer starts with a job (it was cancelled while the batch waited)."""
        with self._ready:
            if not self._tasks or self._tasks[0].job is None:
                return []
            first = self._tasks.popleft()
            batch, kept, prompts = [first], deque(), len(first.job.prompts)
            while self._tasks:
                task = self._tasks.popleft()
                if task.job is None:                       # a reload: nothing after it joins this batch
                    kept.append(task)
                    kept.extend(self._tasks)
                    self._tasks.clear()
                    break
                if task.job.key == first.job.key and prompts + len(task.job.prompts) <= self.max_batch_prompts:
                    batch.append(task)
                    prompts += len(task.job.prompts)
                else:
                    kept.append(task)
            self._tasks.extendleft(reversed(kept))
            self.queued_prompts -= prompts
        return [task for task in batch if task.future.set_running_or_notify_cancel()]   # False: cancelled

    def _abandoned(self, batch: list[_Task]) -> bool:
        """Whether the batch may stop: the worker closes, or every client of the batch went away."""
        return self._closed or all(task.abandoned for task in batch)

    def _run_batch(self, batch: list[_Task]) -> None:
        prompts = [p for t in batch for p in t.job.prompts]
        seeds = [s for t in batch for s in t.job.seeds]
        n, params = batch[0].job.key
        self.decoding = len(prompts)
        try:
            with torch.no_grad():
                groups = self.generator.generate(prompts, n, params, seeds, stop=lambda: self._abandoned(batch))
            self.batches += 1
        except GenerationStopped:
            self.decoding = 0
            self.stopped += 1
            for task in batch:
                task.future.set_exception(RuntimeError("the request was cancelled (its client went away) or the "
                                                       "server is shutting down"))
            return
        except Exception as exc:  # the clients get the error (HTTP 500); the server keeps serving
            self.decoding = 0
            for task in batch:
                task.future.set_exception(exc)
            return
        self.decoding = 0
        start = 0
        for task in batch:
            end = start + len(task.job.prompts)
            task.future.set_result((groups[start:end], self.version))
            start = end

    def _run_reload(self, task: _Task) -> None:
        path, version = task.reload
        try:
            load_weights(self.model, path)
        except Exception as exc:  # WeightsError (the client's folder) or an I/O error: reported, weights unchanged
            task.future.set_exception(exc)
            return
        self.path = str(Path(path))
        if version is not None:
            self.version = version
        task.future.set_result(self.version)
