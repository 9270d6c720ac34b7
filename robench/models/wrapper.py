"""The model as every evaluator sees it: pixel-space input, eval mode, frozen, counted."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from robench._errors import ModelError, first_line
from robench.results import ModelInfo


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, so that the wrapped model takes [0,1] pixels."""

    mean: torch.Tensor  # (1, C, 1, 1) buffers
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Raises:
            ValueError: a std that is not a positive finite number (a negative one would flip the
                sign of a channel, which the certificates' interval and norm rules do not expect).
        """
        super().__init__()
        if not all(math.isfinite(float(s)) and float(s) > 0 for s in std):
            raise ValueError(f"Normalize: every std must be a positive finite number, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    @property
    def is_identity(self) -> bool:
        """True when mean is all 0 and std all 1."""
        return bool((self.mean == 0).all() and (self.std == 1).all())


@dataclass
class PassCounter:
    """Counts forward and backward passes in examples (not calls)."""

    forward: int = 0
    backward: int = 0

    def snapshot(self) -> tuple[int, int]:
        """Current ``(forward, backward)``."""
        return self.forward, self.backward


PROBE_PASSES = 5  # passes of the same inputs compared to detect a randomized model

NOT_DIFFERENTIABLE = (
    "the model's logits do not depend differentiably on its input (its forward pass detaches, rounds or "
    "runs without autograd): gradient-based attacks and certificates need a gradient; declare black-box "
    "attacks (square, boundary, hop_skip_jump) or give the model a differentiable approximation (BPDA)"
)


class PixelModel(nn.Module):
    """``net(normalize(x))`` that counts the examples it sees and the gradients that flow back."""

    def __init__(self, net: nn.Module, normalize: Normalize, counter: PassCounter) -> None:
        super().__init__()
        self.net = net
        self.normalize = normalize
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.counted(x, self.net(self.normalize(x)))

    def compiled(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """This model with ``net(normalize(x))`` under :func:`torch.compile` (dynamic shapes) and the
        counting left outside the graph: a counter inside it is a Python int the compiled code
        specialises on, so every new count would recompile (and after torch's recompile limit the
        model would silently run uncompiled)."""
        core = torch.compile(nn.Sequential(self.normalize, self.net), dynamic=True)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return self.counted(x, core(x))

        return forward

    def counted(self, x: torch.Tensor, out: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
        """``out`` (the network's output for ``x``; its first element if a tuple) with the forward
        pass counted and a hook that counts the backward pass."""
        batch = int(x.shape[0])
        self.counter.forward += batch
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"model must return a tensor of logits (or a tuple starting with one), got {type(out).__name__}")
        if out.ndim == 0 or out.shape[0] != batch:
            # the probe tries batches of 2 and 3 only: a model fixed to one size fails later, here
            raise ModelError(f"model returned logits of shape {list(out.shape)} for a batch of {batch} inputs")
        if x.requires_grad and torch.is_grad_enabled() and not out.requires_grad:
            raise ModelError(NOT_DIFFERENTIABLE)
        if out.requires_grad:
            counter = self.counter

            def _count_backward(grad: torch.Tensor) -> None:
                counter.backward += batch

            out.register_hook(_count_backward)
        return out


@dataclass
class ModelHandle:
    """A loaded model ready for evaluation.

    Attributes:
        module: Pixel-space model (normalisation inside), eval mode, parameters frozen.
        info: Provenance written into results.
        device: Where the model lives.
        counter: Forward/backward pass counter shared with :attr:`module`.
    """

    module: PixelModel
    info: ModelInfo
    device: torch.device
    counter: PassCounter = field(default_factory=PassCounter)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits without gradient, checked to be finite.

        Raises:
            ModelError: if any logit is NaN or infinite.
        """
        logits = self.module(x)
        check_logits(logits, self.info.num_classes)
        return logits

    @torch.no_grad()
    def probe(self, input_shape: Sequence[int], num_classes: int, generator: torch.Generator) -> bool:
        """Check output shape and finiteness on random inputs; return whether outputs are random.

        Forward passes of the same inputs that differ reveal a randomized model (dropout left on,
        stochastic defences); such models need EOT attacks and averaged accuracy. Five passes are
        compared (as pyautoattack's check): two missed a model random on every third call, or on
        a share of calls.

        Raises:
            ModelError: wrong output shape or class count, non-finite outputs, or a crash.
        """
        x = torch.rand((2, *input_shape), generator=generator).to(self.device)
        odd = torch.rand((3, *input_shape), generator=generator).to(self.device)  # a model fixed to one batch size fails here
        try:
            first = self.module(x)
            repeats = [self.module(x) for _ in range(PROBE_PASSES - 1)]
            third = self.module(odd)
        except Exception as exc:  # noqa: BLE001 - whatever the model raises, it is the model's failure
            message = first_line(exc)
            raise ModelError(
                f"model failed on random inputs of the dataset's shape {list(input_shape)} "
                f"(batches of 2 and 3): {type(exc).__name__}: {message}"
            ) from None
        if not all(isinstance(out, torch.Tensor) for out in (first, *repeats, third)):
            raise ModelError(f"model must return a tensor of logits, got {type(first).__name__}")
        if third.ndim != 2 or third.shape[0] != 3:
            raise ModelError(f"model must return logits of shape (N, classes), got {list(third.shape)} for 3 inputs")
        if first.ndim != 2 or first.shape[0] != 2:
            raise ModelError(f"model must return logits of shape (N, classes), got {list(first.shape)}")
        if first.shape[1] != num_classes:
            raise ModelError(f"model returns {first.shape[1]} logits but the dataset has {num_classes} classes")
        check_logits(first, num_classes)
        self.counter.forward -= 2 * PROBE_PASSES + 3  # the probe is not part of any evaluation's cost
        randomized = any(not torch.equal(first, again) for again in repeats)
        self.info = self.info.model_copy(update={"num_classes": num_classes, "randomized": randomized})
        return randomized


class NonFiniteGradient(ModelError):
    """The model's input gradient makes NaN or infinite attack steps (see :func:`check_step`)."""


def check_step(gradient: torch.Tensor, step: torch.Tensor | None = None) -> None:
    """Raise :class:`NonFiniteGradient` for a NaN input gradient (``sign(NaN)`` is 0: the Linf step
    silently stays put) or a non-finite attack step (an infinite gradient that an L2 or L1 step
    normalises to NaN): the input never moves, and every example would pass as robust. An
    infinite gradient under Linf is a usable sign step (``sqrt`` at a black pixel): allowed.
    Without ``step`` (an attack that steps itself), the gradient alone is checked."""
    finite = ~torch.isnan(gradient.flatten(1)).any(dim=1)
    if step is not None:
        finite &= torch.isfinite(step.flatten(1)).all(dim=1)
    if not bool(finite.all()):
        raise NonFiniteGradient(
            f"the model's input gradient gives NaN or infinite attack steps for {int((~finite).sum())} of {gradient.shape[0]} "
            "inputs: gradient attacks cannot run on it (a gradient-masking defence? use BPDA, or a score-based attack: square)"
        )


def check_logits(logits: torch.Tensor, num_classes: int | None) -> None:
    """Raise :class:`ModelError` for logits that are not floating point (bool, integer or complex:
    argmax, softmax and the attacks' losses fail on them, or drop the imaginary part), non-finite
    logits or a wrong class count."""
    if not logits.is_floating_point():
        raise ModelError(f"model returned logits of dtype {str(logits.dtype).removeprefix('torch.')}; expected floating-point logits (float32, float16, bfloat16...)")
    if num_classes is not None and (logits.ndim != 2 or logits.shape[1] != num_classes):
        raise ModelError(f"model returned logits of shape {list(logits.shape)}, expected (N, {num_classes})")
    finite = torch.isfinite(logits).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ModelError(f"model returned NaN or infinite logits for {bad} of {logits.shape[0]} inputs")
