"""What an evaluator gets besides the model and the data: device, seeds, batching, journal, cost.

Evaluators never do I/O. They express per-batch work as a pure function of ``(x, y, generator)``
and hand it to :meth:`EvalContext.map_batches`, which owns batching, progress, the resume
journal, cost accounting and the per-batch random generators. Because each batch's generator is
derived from ``(seed, evaluation, stage, batch index)``, a resumed run gives the same numbers as an
uninterrupted one. A model's own randomness (dropout left on, random input transformations) draws
from the global RNGs of torch, numpy and ``random``; :meth:`EvalContext.map_batches` seeds them from
the same tags for each batch and restores them afterwards, so a randomized model's numbers do not
depend on what ran before either (a resume, another order of evaluations, another rank).
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from robench._errors import ResourceError, message
from robench._numerics import fp32_label
from robench.data.base import Dataset
from robench.journal import Journal
from robench.results import Check, CheckStatus, Cost, MetricRecord

BatchFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], dict[str, torch.Tensor]]


def shortfall_warning(requested: int | None, available: int) -> str | None:
    """The warning of a section whose declared ``n_examples`` asks for more examples than the run
    evaluates (``--n-examples`` or ``dataset.n_examples`` give fewer): it runs on what there is, and
    says so; ``None`` where it got what it asked for."""
    if requested is None or requested <= available:
        return None
    return f"n_examples {requested:,} asks for more examples than the run evaluates ({available:,}): its numbers are over {available:,}"


@dataclass
class EvaluationOutput:
    """What an evaluator returns: records, checks, warnings and JSON artifacts for the report."""

    records: list[MetricRecord] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # record name -> packed per-example 0/1 outcomes


def derive_seed(seed: int, *tags: object) -> int:
    """A 63-bit seed derived from the run seed and any tags (stable across processes)."""
    text = "|".join([str(seed), *map(str, tags)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & ((1 << 63) - 1)


@contextlib.contextmanager
def seeded_global_rngs(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNGs (the CPU's and ``device``'s), numpy's and ``random``'s with ``seed``
    for the block, and restore their states afterwards."""
    import numpy as np

    devices = [device] if device.type == "cuda" else []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


_ALLOCATION_FAILURES = ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE", "CUDA error: out of memory")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the GPU ran out of memory: ``torch.cuda.OutOfMemoryError``, or the
    plain ``RuntimeError`` cuBLAS and cuDNN raise when their workspace cannot be allocated.
    ``CUBLAS_STATUS_NOT_INITIALIZED``, often the same failure at handle creation, is left out: it
    also follows an illegal memory access, which no smaller batch mends."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and any(code in str(exc) for code in _ALLOCATION_FAILURES)
    )


class _Prefetcher:
    """Loads ``dataset`` batches one ahead of their use, in a background thread.

    ``take(start, stop)`` must be called for the batches in the order given; it returns the batch's
    ``(x, y)`` (in pinned memory when ``pin``, so that copies to the GPU are asynchronous) and starts
    loading the next one. Loading errors surface from ``take``, in the caller's thread.
    """

    def __init__(self, dataset: Dataset, batches: list[tuple[int, int]], pin: bool) -> None:
        self.dataset, self.batches, self.pin = dataset, batches, pin
        self.position = 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robench-prefetch") if batches else None
        self.ahead: Future[tuple[torch.Tensor, torch.Tensor]] | None = self._submit(0)

    def _load(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset.load(slice(start, stop))
        return (x.pin_memory(), y.pin_memory()) if self.pin else (x, y)

    def _submit(self, position: int) -> Future[tuple[torch.Tensor, torch.Tensor]] | None:
        if self.pool is None or position >= len(self.batches):
            return None
        return self.pool.submit(self._load, *self.batches[position])

    def take(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch ``[start, stop)``, the next one in the plan."""
        if self.position >= len(self.batches) or self.batches[self.position] != (start, stop) or self.ahead is None:
            raise RuntimeError(f"batch {start}:{stop} taken out of order")  # a programming error, not user input
        batch = self.ahead.result()  # with one worker, the next load could not start any sooner
        self.position += 1
        self.ahead = self._submit(self.position)
        return batch

    def close(self) -> None:
        """Stop loading (a pending load finishes; its result is dropped)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class EvalContext:
    """Run-wide settings plus the accounting of the evaluation in progress.

    Attributes:
        device: Where tensors go.
        seed: Run seed; every generator derives from it.
        batch_size: Examples per batch.
        journal: Resume journal (``None``: no journalling).
        progress: Show progress bars.
        precision: The precision label an evaluation's cost starts with (an evaluator sets its own,
            e.g. bf16 in fast mode); ``None``: float32 as it runs on ``device``
            (:func:`robench._numerics.fp32_label`: ``fp32 (TF32 convolutions)`` on CUDA by default).
        shared: Hand-offs between evaluations (clean probabilities, adversarial probabilities...).
        key: Key of the evaluation in progress.
        cost: Its cost so far.
        rank: This process's rank under ``torch.distributed`` (0 otherwise).
        world_size: Number of processes sharing the batches.
        data_home: Folder holding datasets by manifest directory (``--data-home``), for evaluators
            that read further datasets (released corruption sets); ``None``: ``$ROBENCH_DATA``.
        batch_offset: While :meth:`map_batches` calls ``fn``, the dataset index of ``x[0]`` (for
            evaluators whose random draws follow fixed example blocks, not batches).
    """

    device: torch.device
    seed: int = 0
    batch_size: int = 256
    journal: Journal | None = None
    progress: bool = True
    precision: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    cost: Cost = field(default_factory=Cost)
    rank: int = 0
    world_size: int = 1
    data_home: str | None = None
    batch_offset: int = 0
    _chunk: int | None = field(default=None, repr=False)
    _block_cache: tuple[tuple[Any, ...], torch.Tensor] | None = field(default=None, repr=False)
    _began: float = field(default_factory=time.perf_counter, repr=False)
    _in_batches: float = field(default=0.0, repr=False)

    def begin(self, key: str) -> None:
        """Start accounting for evaluation ``key``."""
        self.key = key
        self._chunk = None
        self._block_cache = None
        self.cost = Cost(device=str(self.device), precision=self.precision or fp32_label(self.device), batch_size=self.batch_size)
        self._began = time.perf_counter()
        self._in_batches = 0.0  # seconds spent in map_batches (its batches' times are counted there)

    def finish(self) -> Cost:
        """The cost of the evaluation begun last: its batches' times (a journalled batch's as it was
        measured) plus the time the evaluation spent outside :meth:`map_batches` (fitting a
        temperature, a Lipschitz bound, bootstrap intervals, merging the outputs)."""
        outside = time.perf_counter() - self._began - self._in_batches
        self.cost.wall_time_s += max(0.0, outside)
        return self.cost

    def generator(self, *tags: object, device: torch.device | str | None = None) -> torch.Generator:
        """A fresh generator seeded from the run seed, the current evaluation and ``tags``."""
        gen = torch.Generator(device=device or "cpu")
        gen.manual_seed(derive_seed(self.seed, self.key, *tags))
        return gen

    def model_rng(self, *tags: object) -> contextlib.AbstractContextManager[None]:
        """Seed the global RNGs a model draws from (:func:`seeded_global_rngs`) from the run seed,
        the current evaluation and ``tags``; restore them afterwards.

        Evaluators draw their own randomness from explicit generators; a randomized model (dropout
        in train mode, a random resize-and-pad defence) draws from these. Seeded per batch, its
        passes are a function of ``(seed, evaluation, stage, batch index)`` like everything else,
        so a run resumed inside a stage, or sharded over ranks, reproduces an uninterrupted one.
        """
        return seeded_global_rngs(derive_seed(self.seed, self.key, *tags, "model-rng"), self.device)

    def blockwise(
        self,
        stage: str,
        dataset: Dataset,
        x: torch.Tensor,
        transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
        block: int,
        on_device: bool = False,
    ) -> torch.Tensor:
        """``transform(images, generator)`` of ``x``, examples ``batch_offset ..`` of ``dataset``, with
        the random draws of fixed blocks of ``block`` examples rather than of the batch.

        Example ``i`` is transformed with the generator of block ``i // block`` (seeded from the run
        seed, the evaluation, ``stage`` and the block), so its result does not depend on the batch
        size, an out-of-memory back-off or sharding. A block the batch cuts is transformed whole (its
        other examples read again) and only the batch's rows are kept: transforms draw batch-shaped
        noise, so a block's draws need the whole block. The last such block is kept, so the batches
        that share it transform it once; callers should use batches that are multiples of ``block``.
        The last block of the dataset is transformed at full size (padded), so the first ``n``
        examples of a longer dataset get the same results.
        """
        start = self.batch_offset
        stop = start + len(x)
        out: torch.Tensor | None = None

        def whole(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            # The last block of a dataset is padded to ``block`` rows (copies of its last image) so
            # that it draws what the same block of a larger dataset draws: an example's result does
            # not depend on how many examples follow it (``n_examples``) either.
            n = len(images)
            if n < block:
                images = torch.cat((images, images[-1:].expand(block - n, *images.shape[1:])))
            return transform(images, generator)[:n]

        for index in range(start // block, (stop - 1) // block + 1):
            lo, hi = index * block, min((index + 1) * block, len(dataset))
            cache_key = (self.key, stage, block, index, x.device)
            generator = self.generator(stage, "block", index, device=x.device if on_device else None)
            if start <= lo and hi <= stop:
                done = whole(x[lo - start : hi - start], generator)
            elif self._block_cache is not None and self._block_cache[0] == cache_key:
                done = self._block_cache[1]  # the rest of a block an earlier (smaller) batch cut
            else:
                done = whole(dataset.load(range(lo, hi))[0].to(x.device), generator)
                self._block_cache = (cache_key, done)
            a, b = max(lo, start), min(hi, stop)
            if out is None:
                out = done.new_empty((len(x), *done.shape[1:]))
            out[a - start : b - start] = done[a - lo : b - lo]
        assert out is not None
        return out

    def map_batches(
        self,
        stage: str,
        dataset: Dataset,
        fn: BatchFn,
        model_counter: Any,
        *,
        batch_size: int | None = None,
        desc: str | None = None,
        rng_on_device: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Apply ``fn`` to every batch; return its outputs concatenated along dim 0 (on the CPU).

        Finished batches come from the journal when present (this rank's own, else a sibling's:
        a resume reads the journals of every rank of the run, of any earlier process count); new
        ones are journalled in this rank's own. Wall time (a new batch's including its journal
        write) and passes are added to :attr:`cost` (for journalled batches, the cost they had, of
        the one record taken where several journals hold the batch).

        Under ``torch.distributed`` (``world_size > 1``) batch ``i`` runs on rank ``i % world_size``
        and every rank receives every output, in order; since a batch's generator depends only on
        ``(seed, evaluation, stage, i)``, the result equals a single-process run.

        Batches are loaded one ahead, in a background thread (pinned memory on CUDA), so decoding and
        host-to-device copies overlap the computation; ``dataset.load`` must therefore be safe to
        call from another thread (every built-in dataset is).

        On CUDA out-of-memory the batch is retried in halves (and later batches of the evaluation
        use the smaller size, in a resumed run too, so that their random draws are those of the
        interrupted run); :attr:`Cost.oom_retries` records it, and only the passes of the attempt
        that completed are counted.

        Each batch runs under :meth:`model_rng` (the global RNGs seeded from the same tags as its
        generator, restored afterwards): a randomized model's passes are reproducible too.

        Args:
            stage: Name of this pass within the evaluation (``attack``, ``gaussian_noise/3``).
            dataset: Examples to iterate, in order.
            fn: ``(x, y, generator) -> {name: per-example tensor}``; ``x`` and ``y`` are on the device.
            model_counter: The model's :class:`~robench.models.wrapper.PassCounter`.
            batch_size: Overrides :attr:`batch_size`.
            desc: Progress-bar label.
            rng_on_device: Give ``fn`` a generator on :attr:`device` rather than on the CPU (faster
                draws on a GPU; the stream, so the draws, then depend on the device type).
        """
        entered = time.perf_counter()
        try:
            return self._map_batches(stage, dataset, fn, model_counter, batch_size, desc, rng_on_device)
        finally:
            self._in_batches += time.perf_counter() - entered

    def _map_batches(
        self, stage: str, dataset: Dataset, fn: BatchFn, model_counter: Any, batch_size: int | None, desc: str | None, rng_on_device: bool
    ) -> dict[str, torch.Tensor]:
        from tqdm.auto import tqdm

        size = batch_size or self.batch_size
        # the examples per batch of the evaluation's largest stage (sections pick their own: cells, images per smoothing batch)
        used = min(size, len(dataset)) if len(dataset) else size  # a batch as it ran, not the cap
        self.cost.batch_size = used if self.cost.batches == 0 else max(used, self.cost.batch_size or 0)
        starts = list(range(0, len(dataset), size))
        mine: dict[int, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        bar = tqdm(
            total=len(dataset),
            desc=desc or f"{self.key} {stage}".strip(),
            unit="img",
            disable=None if self.progress and self.rank == 0 else True,  # None: tqdm's own check that stderr is a terminal
            leave=False,
            dynamic_ncols=True,
        )
        # This rank's batches; those already in the journal are taken from it, the rest computed while
        # a background thread loads the next one (decoding and host-to-device staging overlap compute).
        plan = []
        # batch i goes to rank (i + offset) % world, the offset drawn from the stage's name: a stage of
        # fewer batches than ranks (a corruption cell, a stability perturbation) does not always land on rank 0
        offset = int.from_bytes(hashlib.sha256(f"{self.key}/{stage}".encode()).digest()[:4], "big") % self.world_size
        for index, start in enumerate(starts):
            if (index + offset) % self.world_size == self.rank:
                key = f"{self.key}/{stage}/{index}"
                plan.append((index, start, min(start + size, len(dataset)), key, self.journal.get(key) if self.journal is not None else None))
        pending = [(start, stop) for _, start, stop, _, found in plan if found is None]
        loader = _Prefetcher(dataset, pending, pin=self.device.type == "cuda")
        failure: tuple[int, Exception] | None = None  # a sharded run's failed batch, raised on every rank below
        try:
            for index, start, stop, journal_key, found in plan:
                if found is not None:
                    data, meta = found
                    meta = {**meta, "resumed": True}
                    if meta.get("batch_size", stop - start) < stop - start:
                        # the run backed off after running out of memory: carry on with its smaller
                        # chunks, as it would have, so that the remaining batches' draws are the same
                        self._chunk = min(self._chunk or meta["batch_size"], meta["batch_size"])
                else:
                    try:
                        data, meta = self._run_batch(fn, loader, start, stop, stage, index, model_counter, rng_on_device)
                    except Exception as exc:
                        if self.world_size == 1:
                            raise
                        # the other ranks wait in the gather: join it with the error instead of leaving
                        # them to find a closed connection
                        failure = (index, exc)
                        break
                    if self.journal is not None:  # fsync'd: on a slow disk, time the batch's own timing did not see
                        written = time.perf_counter()
                        self.journal.put(journal_key, data, meta)
                        meta = {**meta, "journal_s": time.perf_counter() - written}  # gathered, not journalled
                mine[index] = (data, meta)
                bar.update((stop - start) * self.world_size)
        finally:
            loader.close()
            bar.close()
        done = self._gather(mine, failure)
        per_rank_time: dict[int, float] = {}
        for index in range(len(starts)):
            meta = done[index][1]
            rank = (index + offset) % self.world_size
            per_rank_time[rank] = per_rank_time.get(rank, 0.0) + meta["wall_time_s"] + meta.get("journal_s", 0.0)
            self.cost.forward_passes += meta["forward"]
            self.cost.backward_passes += meta["backward"]
            self.cost.oom_retries += meta.get("oom_retries", 0)
            self.cost.resumed_batches += int(bool(meta.get("resumed")))
            self.cost.batches += 1
        self.cost.wall_time_s += max(per_rank_time.values(), default=0.0)
        if not done:
            return {}
        outputs = [done[i][0] for i in range(len(starts))]
        return {name: torch.cat([o[name] for o in outputs]) for name in outputs[0]}

    def from_every_rank(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (``[value]`` in a single process): for what a rank
        only saw itself, e.g. a library's log of the batches it ran."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, value)
        return parts

    def _gather(
        self, mine: dict[int, tuple[dict[str, torch.Tensor], dict[str, Any]]], failure: tuple[int, Exception] | None = None
    ) -> dict[int, tuple[dict[str, torch.Tensor], dict[str, Any]]]:
        """Every rank's finished batches, on every rank.

        Raises:
            Exception: the error of the lowest failed batch of any rank, on every rank (its type
                kept: a ModelError on one shard ends the run with the same one line everywhere).
        """
        if self.world_size == 1:
            return mine
        sent: Any = failure
        if failure is not None:
            try:
                pickle.dumps(failure[1])
            except Exception:  # noqa: BLE001 - an exception that does not pickle travels as its text
                sent = (failure[0], RuntimeError(f"{type(failure[1]).__name__}: {message(failure[1])}"))
        parts = self.from_every_rank((mine, sent))
        errors = sorted((part[1] for part in parts if part[1] is not None), key=lambda f: f[0])
        if errors:
            index, exc = errors[0]
            if failure is not None and failure[0] == index:
                raise failure[1]  # this rank's own error, with its traceback
            raise exc
        merged: dict[int, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        for part, _ in parts:
            merged.update(part)
        return merged

    def _run_batch(
        self, fn: BatchFn, loader: _Prefetcher, start: int, stop: int, stage: str, index: int, counter: Any, rng_on_device: bool
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tick = time.perf_counter()  # includes any wait for the data: per-batch times add up to the wall time
        x_all, y_all = loader.take(start, stop)
        retries = 0
        while True:
            forward0, backward0 = counter.snapshot()  # passes of the attempt that completes, not of failed ones
            chunk = min(self._chunk or (stop - start), stop - start)
            generator = self.generator(stage, index, device=self.device if rng_on_device else None)
            try:
                pieces = []
                with self.model_rng(stage, index):  # the model's own randomness, as a function of the batch
                    for lo in range(0, stop - start, chunk):
                        x = x_all[lo : lo + chunk].to(self.device, non_blocking=True)
                        y = y_all[lo : lo + chunk].to(self.device, non_blocking=True)
                        self.batch_offset = start + lo
                        pieces.append({k: v.detach().cpu() for k, v in fn(x, y, generator).items()})
                break
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
                if not out_of_memory(exc):
                    raise
                if chunk <= 1:
                    raise ResourceError(
                        f"{self.key}: out of GPU memory even with one example per batch; use a smaller model or input"
                    ) from None
                retries += 1
                self._chunk = max(1, chunk // 2)
            # out of the handler: the failed attempt's tensors, which its traceback held, are free now
            pieces = []
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        data = {k: torch.cat([p[k] for p in pieces]) for k in pieces[0]} if len(pieces) > 1 else pieces[0]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        meta = {
            "wall_time_s": time.perf_counter() - tick,
            "forward": counter.forward - forward0,
            "backward": counter.backward - backward0,
            "oom_retries": retries,
            "batch_size": chunk,
        }
        return data, meta

    def add_check(self, output: EvaluationOutput, name: str, ok: bool, message: str, warn_only: bool = True, **evidence: Any) -> None:
        """Append a pass/warn (or pass/fail) check with its evidence to ``output``."""
        status: CheckStatus = "pass" if ok else ("warn" if warn_only else "fail")
        output.checks.append(Check(name=name, status=status, message=message, evidence=evidence))
