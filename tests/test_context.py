"""EvalContext: per-batch generators, CUDA out-of-memory back-off (simulated on the CPU)."""

from __future__ import annotations

import threading

import pytest
import torch

from robench._errors import DataError, ResourceError
from robench.context import EvalContext
from robench.data.base import ArrayDataset
from robench.models.wrapper import PassCounter


def _data(n: int = 20) -> ArrayDataset:
    return ArrayDataset(torch.rand(n, 1, 4, 4), torch.arange(n) % 2, num_classes=2)


def test_outputs_in_order_and_cost() -> None:
    ctx = EvalContext(device=torch.device("cpu"), batch_size=6, progress=False)
    ctx.begin("e")
    out = ctx.map_batches("s", _data(), lambda x, y, g: {"y": y, "r": torch.rand(len(y), generator=g)}, PassCounter())
    assert torch.equal(out["y"], torch.arange(20) % 2)
    assert ctx.cost.batches == 4
    again = EvalContext(device=torch.device("cpu"), batch_size=6, progress=False)
    again.begin("e")
    assert torch.equal(again.map_batches("s", _data(), lambda x, y, g: {"r": torch.rand(len(y), generator=g)},
                                         PassCounter())["r"], out["r"])


def test_oom_halves_the_batch_and_is_recorded() -> None:
    seen: list[int] = []

    def fn(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        seen.append(len(x))
        if len(x) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return {"y": y}

    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("e")
    out = ctx.map_batches("s", _data(), fn, PassCounter())
    assert torch.equal(out["y"], torch.arange(20) % 2)
    assert ctx.cost.oom_retries == 2  # 8 -> 4 -> 2, then the smaller size sticks
    assert max(seen[3:]) <= 2


@pytest.mark.parametrize("failure", ["CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
                                     "cuDNN error: CUDNN_STATUS_ALLOC_FAILED", "CUDA error: out of memory"])
def test_cublas_and_cudnn_allocation_failures_halve_the_batch_too(failure: str) -> None:
    """cuBLAS and cuDNN report a failed workspace allocation as a plain RuntimeError, not as
    torch.cuda.OutOfMemoryError; the run used to stop there instead of halving the batch."""
    def fn(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        if len(x) > 3:
            raise RuntimeError(failure)
        return {"y": y}

    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("e")
    assert torch.equal(ctx.map_batches("s", _data(), fn, PassCounter())["y"], torch.arange(20) % 2)
    assert ctx.cost.oom_retries == 2


def test_other_runtime_errors_are_not_retried() -> None:
    calls: list[int] = []

    def fn(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        calls.append(len(x))
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("e")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        ctx.map_batches("s", _data(), fn, PassCounter())
    assert calls == [8]


def test_oom_counts_only_completed_passes_and_resume_keeps_the_smaller_chunks(tmp_path) -> None:
    """Failed attempts' passes are not cost; a resumed run goes on in the chunks the interrupted
    run had backed off to, so its remaining batches draw the same random numbers."""
    from robench.journal import Journal

    def make_fn(counter: PassCounter, seen: list[int], oom_above: int | None, stop_at_batch: int | None):
        def fn(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
            counter.forward += len(x)  # as PixelModel does, before the network runs
            if oom_above is not None and len(x) > oom_above:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            if stop_at_batch is not None and int(y[0]) >= stop_at_batch:
                raise KeyboardInterrupt
            seen.append(len(x))
            return {"r": torch.rand(len(x), generator=g), "i": y}
        return fn

    data = ArrayDataset(torch.rand(24, 1, 4, 4), torch.arange(24), num_classes=24)
    counter, seen = PassCounter(), []
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False)
    ctx.begin("e")
    full = ctx.map_batches("s", data, make_fn(counter, seen, 3, None), counter)
    assert ctx.cost.forward_passes == 24 and ctx.cost.oom_retries == 2  # failed 8- and 4-example attempts not counted

    identity = {"seed": 0}
    journal = Journal(tmp_path / "j.bin", identity, resume=False)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False, journal=journal)
    ctx.begin("e")
    with pytest.raises(KeyboardInterrupt):  # OOM in batch 0, interrupted in batch 1 (examples 8..)
        ctx.map_batches("s", data, make_fn(PassCounter(), [], 3, 8), PassCounter())
    journal.close()
    journal = Journal(tmp_path / "j.bin", identity, resume=True)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=8, progress=False, journal=journal)
    ctx.begin("e")
    resumed_seen: list[int] = []
    resumed = ctx.map_batches("s", data, make_fn(PassCounter(), resumed_seen, None, None), PassCounter())  # a bigger GPU
    journal.close()
    assert ctx.cost.resumed_batches == 1 and max(resumed_seen) <= 2
    assert torch.equal(resumed["i"], full["i"]) and torch.equal(resumed["r"], full["r"])


def test_oom_at_batch_one_is_a_clean_error() -> None:
    def fn(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    ctx = EvalContext(device=torch.device("cpu"), batch_size=4, progress=False)
    ctx.begin("e")
    with pytest.raises(ResourceError, match="one example"):
        ctx.map_batches("s", _data(), fn, PassCounter())


@pytest.mark.gpu
def test_real_cuda_oom_halves_the_batch() -> None:
    # Batches over 3 examples ask for twice the card's memory: a genuine allocator failure.
    too_much = 2 * torch.cuda.get_device_properties(0).total_memory

    def fn(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        assert x.is_cuda
        if len(x) > 3:
            torch.empty(too_much, dtype=torch.uint8, device=x.device)
        return {"y": y}

    ctx = EvalContext(device=torch.device("cuda"), batch_size=8, progress=False)
    ctx.begin("e")
    out = ctx.map_batches("s", _data(), fn, PassCounter())
    assert torch.equal(out["y"], torch.arange(20) % 2) and ctx.cost.oom_retries == 2


def test_generator_on_the_device_when_asked() -> None:
    ctx = EvalContext(device=torch.device("cpu"), batch_size=10, progress=False)
    ctx.begin("e")
    devices = []
    ctx.map_batches("s", _data(), lambda x, y, g: devices.append(g.device) or {"y": y}, PassCounter(), rng_on_device=True)
    assert devices == [torch.device("cpu")] * 2


class _SignallingData(ArrayDataset):
    """Sets ``loading[i]`` when the load of the batch starting at ``i`` begins."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        super().__init__(torch.rand(n, 1, 4, 4), torch.arange(n), num_classes=n)  # label = position
        self.loading = {start: threading.Event() for start in range(0, n)}
        self.fail_at = fail_at

    def load(self, index: slice) -> tuple[torch.Tensor, torch.Tensor]:
        self.loading[index.start].set()
        if index.start == self.fail_at:
            raise DataError(f"batch at {index.start} is unreadable")
        return super().load(index)


def test_next_batch_loads_while_the_current_one_computes() -> None:
    data = _SignallingData(12)
    overlapped = []

    def fn(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        start = int(y[0])
        if start + 4 < 12:  # the next batch's load has begun before this batch's work ends
            overlapped.append(data.loading[start + 4].wait(timeout=10))
        return {"y": y}

    ctx = EvalContext(device=torch.device("cpu"), batch_size=4, progress=False)
    ctx.begin("e")
    out = ctx.map_batches("s", data, fn, PassCounter())
    assert torch.equal(out["y"], torch.arange(12)) and overlapped == [True, True]


def test_a_failing_load_raises_in_the_caller_and_stops_loading() -> None:
    data = _SignallingData(12, fail_at=4)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=4, progress=False)
    ctx.begin("e")
    with pytest.raises(DataError, match="unreadable"):
        ctx.map_batches("s", data, lambda x, y, g: {"y": y}, PassCounter())
    assert not data.loading[8].is_set()  # nothing is loaded past the failure


def test_blockwise_draws_follow_blocks_and_reuse_a_cut_block() -> None:
    """Rows transformed batch by batch, with batches that cut blocks, equal one pass over the whole
    set; a block cut by consecutive batches is read and transformed once."""
    from robench.data.base import ArrayDataset

    data = ArrayDataset(torch.arange(20.0).view(20, 1, 1, 1) / 20, torch.zeros(20, dtype=torch.long), 2)
    loads: list[int] = []
    original = data.load

    def counting_load(indices):  # noqa: ANN001, ANN202
        loads.append(len(list(indices)) if not isinstance(indices, slice) else -1)
        return original(indices)

    data.load = counting_load  # type: ignore[method-assign]
    calls: list[int] = []

    def noisy(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        calls.append(len(images))
        return images + torch.rand(images.shape, generator=generator)

    def run(batch: int) -> torch.Tensor:
        ctx = EvalContext(device=torch.device("cpu"), seed=1, progress=False)
        ctx.begin("corruptions")
        pieces = []
        for start in range(0, 20, batch):
            ctx.batch_offset = start
            pieces.append(ctx.blockwise("fog/3", data, original(range(start, min(start + batch, 20)))[0], noisy, 8))
        return torch.cat(pieces)

    whole = run(20)
    loads.clear(), calls.clear()
    assert torch.equal(run(4), whole)  # blocks of 8 cut in halves by batches of 4
    assert sum(loads) == 8 + 8 and len(calls) == 3  # blocks 0 and 1 read once each; block 2 (16-19) is one batch
    assert torch.equal(run(3), whole) and torch.equal(run(8), whole)


def test_blockwise_results_do_not_depend_on_how_many_examples_follow() -> None:
    """The first 10 of 10 examples get what the first 10 of 20 get (a fast and a full audit share
    their examples): the last, partial block is transformed at full size."""
    from robench.data.base import ArrayDataset

    images = torch.rand(20, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    sizes: list[int] = []

    def noisy(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sizes.append(len(x))
        return x + torch.rand(x.shape, generator=generator)  # batch-shaped draws, as the corruptions make

    def run(n: int) -> torch.Tensor:
        data = ArrayDataset(images[:n], torch.zeros(n, dtype=torch.long), 2)
        ctx = EvalContext(device=torch.device("cpu"), seed=1, progress=False)
        ctx.begin("stability")
        ctx.batch_offset = 0
        return ctx.blockwise("gaussian_noise", data, images[:n], noisy, 8)

    assert torch.equal(run(10), run(20)[:10]) and torch.equal(run(3), run(20)[:3])
    assert set(sizes) == {8}  # every draw is block-shaped


def test_cost_counts_the_work_outside_the_batches() -> None:
    # a Lipschitz bound, a temperature fit, bootstrap intervals run outside map_batches: still cost
    import time

    ctx = EvalContext(device=torch.device("cpu"), batch_size=6, progress=False)
    ctx.begin("e")
    ctx.map_batches("s", _data(), lambda x, y, g: {"y": y}, PassCounter())
    time.sleep(0.3)  # the evaluation's own work after its batches
    cost = ctx.finish()
    assert 0.3 <= cost.wall_time_s < 1.0
    assert cost.batches == 4 and cost.batch_size == 6
    ctx.begin("f")
    ctx.map_batches("s", _data(), lambda x, y, g: {"y": y}, PassCounter(), batch_size=4)
    ctx.map_batches("t", _data(), lambda x, y, g: {"y": y}, PassCounter(), batch_size=10)
    assert ctx.finish().batch_size == 10  # the largest stage's batch, not the run's 6


def test_cost_batch_size_is_a_batch_that_ran() -> None:
    ctx = EvalContext(device=torch.device("cpu"), batch_size=128, progress=False)
    ctx.begin("e")
    ctx.map_batches("s", _data(20), lambda x, y, g: {"y": y}, PassCounter())
    assert ctx.finish().batch_size == 20  # 20 examples: the cap of 128 never ran


def test_batches_seed_the_global_rngs_and_restore_them() -> None:
    """A randomized model draws from torch's, numpy's and random's global RNGs: each batch's draws
    are a function of the run seed and the batch (not of what ran before), and the caller's states
    are left as they were."""
    import random

    import numpy as np

    def draws(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n = len(x)
        return {"torch": torch.rand(n), "numpy": torch.from_numpy(np.random.rand(n)), "random": torch.tensor([random.random() for _ in range(n)])}

    def run(prior: int, seed: int = 0) -> dict[str, torch.Tensor]:
        torch.manual_seed(prior), np.random.seed(prior), random.seed(prior)
        states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
        ctx = EvalContext(device=torch.device("cpu"), seed=seed, batch_size=5, progress=False)
        ctx.begin("e")
        data = ArrayDataset(torch.zeros(20, 1, 4, 4), torch.arange(20) % 2, num_classes=2)
        out = ctx.map_batches("s", data, draws, PassCounter())
        assert torch.equal(torch.get_rng_state(), states[0])
        assert (np.random.get_state()[1] == states[1]).all() and random.getstate() == states[2]
        return out

    first, again, other = run(0), run(99), run(0, seed=1)
    for name in ("torch", "numpy", "random"):
        assert torch.equal(first[name], again[name])
        assert not torch.equal(first[name], other[name])
        assert not torch.equal(first[name][:5], first[name][5:10])  # batches differ from one another


def test_a_section_asking_for_more_examples_than_the_run_has_says_so() -> None:
    """corruptions, stability and smoothing with n_examples 20 in a run of 8 examples (--n-examples 8)
    ran on the 8 silently: the records' n was the only sign."""
    import robench
    from robench.threat_model import ThreatModel

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    threat = ThreatModel.model_validate({
        "name": "short", "dataset": {"manifest": "mnist5k"},
        "evaluations": {"clean": True,
                        "corruptions": {"corruptions": ["brightness"], "severities": [1], "n_examples": 20},
                        "stability": {"perturbations": ["brightness"], "n_examples": 20},
                        "certification": [{"name": "smoothing", "params": {"sigma": 0.25, "n0": 4, "n": 8, "n_examples": 20}},
                                          {"name": "smoothing", "id": "fits", "params": {"sigma": 0.25, "n0": 4, "n": 8, "n_examples": 5}}]},
    })  # fmt: skip
    results = robench.evaluate(net, threat, n_examples=8, device="cpu", progress=False)
    said = "n_examples 20 asks for more examples than the run evaluates (8): its numbers are over 8"
    for key in ("corruptions", "stability", "certification/smoothing"):
        assert said in results.evaluation(key).warnings, key
    assert not any("asks for more" in w for w in results.evaluation("certification/fits").warnings)


def test_cost_counts_the_journal_writes(tmp_path, monkeypatch) -> None:
    # each finished batch is fsync'd to the journal inside map_batches, outside the batch's timing: that
    # time was in neither the batches' times nor the evaluation's time outside map_batches
    import time

    from robench.journal import Journal

    put = Journal.put

    def slow_put(self, key, data, meta) -> None:  # a slow disk's fsync
        time.sleep(0.1)
        put(self, key, data, meta)

    monkeypatch.setattr(Journal, "put", slow_put)
    journal = Journal(tmp_path / "j.bin", {"seed": 0}, resume=False)
    ctx = EvalContext(device=torch.device("cpu"), batch_size=5, progress=False, journal=journal)
    ctx.begin("e")
    began = time.perf_counter()
    ctx.map_batches("s", _data(), lambda x, y, g: {"y": y}, PassCounter())
    elapsed = time.perf_counter() - began
    cost = ctx.finish()
    journal.close()
    assert cost.wall_time_s >= 0.4 and cost.wall_time_s >= 0.9 * elapsed, (cost.wall_time_s, elapsed)
