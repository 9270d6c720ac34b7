"""Interval bound propagation (Gowal et al. 2018; Mirman et al. 2018).

A box ``[l, u]`` is carried in centre-radius form, ``mu = (u + l) / 2``, ``r = (u - l) / 2``:

- affine layers ``z = W h + b`` (Linear, Conv2d, eval BatchNorm, the normalisation wrapper):
  ``mu' = W mu + b``, ``r' = |W| r``;
- monotone non-decreasing maps (ReLU and other monotone activations, max and average pooling,
  flatten/reshape, concatenation, sums and means): ``[h(l), h(u)]``;
- residual additions add the boxes; multiplication by a constant scales and reorders them.

The specification ``z_y - z_j > 0`` is folded into the last linear layer when the model ends in
one (``C W`` with rows ``e_y - e_j``), which is tighter than subtracting logit bounds. A layer not
listed here raises a :class:`~robench.ConfigError` naming it.

L2 input sets are bounded by the enclosing box ``[x - eps, x + eps]`` (the L2 ball lies inside
it): sound, but looser than a dedicated L2 bound.
"""

from __future__ import annotations

import builtins
import math
import operator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from robench._errors import ConfigError
from robench.certify._trace import TracingInterpreter, call_argument, is_exact_cast, last_linear, standard_forward, trace
from robench.models.wrapper import Normalize

# Leaf layers that are monotone non-decreasing maps (applied to both ends of the box).
MONOTONE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.Hardtanh, nn.Hardsigmoid,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout,
    nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
# Functions and tensor methods that are monotone non-decreasing in their tensor argument(s).
MONOTONE_FUNCTIONS: frozenset[Any] = frozenset(
    {
        torch.flatten, torch.reshape, torch.relu, torch.sigmoid, torch.tanh, torch.cat, torch.squeeze,
        torch.unsqueeze, F.relu, F.relu6, F.leaky_relu, F.elu, F.sigmoid, F.tanh, F.softplus, F.hardtanh,
        F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.max_pool1d, F.max_pool2d,
        F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.dropout, torch.mean, torch.sum,
    }
)
MONOTONE_METHODS: frozenset[str] = frozenset(
    {
        "flatten", "view", "reshape", "contiguous", "relu", "sigmoid", "tanh", "clone", "unsqueeze",
        "squeeze", "permute", "transpose", "mean", "sum", "float", "to",
    }
)  # fmt: skip
_SHAPE_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim"})
_METHOD = "IBP"


class Box(NamedTuple):
    """An element-wise interval ``lower <= z <= upper``."""

    lower: torch.Tensor
    upper: torch.Tensor

    @property
    def centre(self) -> torch.Tensor:
        return (self.upper + self.lower) / 2

    @property
    def radius(self) -> torch.Tensor:
        return (self.upper - self.lower) / 2

    @classmethod
    def from_centre(cls, centre: torch.Tensor, radius: torch.Tensor) -> Box:
        return cls(centre - radius, centre + radius)


def input_box(x: torch.Tensor, eps: float, bounds: tuple[float, float] = (0.0, 1.0)) -> Box:
    """``[max(x - eps, lo), min(x + eps, hi)]``, its ends rounded outward: the Linf ball, and a box
    around the L2 ball.

    Raises:
        ConfigError: ``eps`` is negative or not finite (a negative eps made an inverted box, in
            which a misclassified ``x`` was "verified"), or ``x`` lies outside ``bounds`` (the
            clipped box would not contain it).
    """
    if not (math.isfinite(eps) and eps >= 0):
        raise ConfigError(f"certification: expected a finite eps >= 0, got {eps}")
    low, high = bounds
    if x.numel() and (float(x.min()) < low or float(x.max()) > high):
        raise ConfigError(f"certification: the inputs lie outside the input bounds [{low}, {high}] "
                          f"(from {float(x.min()):.4g} to {float(x.max()):.4g})")  # fmt: skip
    if eps == 0:
        return Box(x.clamp(*bounds), x.clamp(*bounds))
    return outward_box(x, eps, bounds)


def outward_box(x: torch.Tensor, radius: float | torch.Tensor, bounds: tuple[float, float]) -> Box:
    """``[x - radius, x + radius]`` clipped to ``bounds``, its ends one step outward: ``x -/+ radius``
    rounds to nearest, possibly inward, and the step keeps every float of x's dtype within
    ``radius`` of x (in real arithmetic) inside the box, as an attacker not clipping in float may
    pick. ``radius``: a number, or a tensor that broadcasts against ``x`` (one per example)."""
    lower = torch.nextafter(x - radius, torch.full_like(x, -math.inf))
    upper = torch.nextafter(x + radius, torch.full_like(x, math.inf))
    return Box(lower.clamp(*bounds), upper.clamp(*bounds))


def _affine(box: Box, weight_apply: Any, abs_apply: Any) -> Box:
    return Box.from_centre(weight_apply(box.centre), abs_apply(box.radius))


def _bn_scale_shift(layer: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    if layer.training or layer.running_mean is None or layer.running_var is None:
        raise ConfigError(f"IBP needs BatchNorm in eval mode with running statistics, got {layer}")
    scale = torch.rsqrt(layer.running_var + layer.eps)
    if layer.weight is not None:
        scale = scale * layer.weight
    shift = -layer.running_mean * scale
    if layer.bias is not None:
        shift = shift + layer.bias
    return scale, shift


def _channel_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(1, -1, *([1] * (like.ndim - 2)))


def propagate_layer(layer: nn.Module, box: Box) -> Box | None:
    """The box after one leaf layer, or ``None`` when the layer is not supported."""
    if isinstance(layer, nn.Linear):
        return _affine(box, layer, lambda r: F.linear(r, layer.weight.abs()))
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return _affine(box, layer, lambda r: layer._conv_forward(r, layer.weight.abs(), None))
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        scale, shift = _bn_scale_shift(layer)
        centre = box.centre * _channel_view(scale, box.lower) + _channel_view(shift, box.lower)
        return Box.from_centre(centre, box.radius * _channel_view(scale.abs(), box.lower))
    if isinstance(layer, Normalize):
        return _affine(box, layer, lambda r: r / layer.std.to(r.dtype).abs())  # a radius stays >= 0
    if isinstance(layer, nn.LeakyReLU) and layer.negative_slope < 0:
        return None
    if isinstance(layer, (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)) and layer.return_indices:
        return None
    if isinstance(layer, MONOTONE_LAYERS) and _monotone_as_configured(layer):
        box = Box(layer(box.lower), layer(box.upper))
        return _widen(box, softplus_jump(layer.beta, layer.threshold)) if isinstance(layer, nn.Softplus) else box
    return None


def softplus_jump(beta: float, threshold: float) -> float:
    """The downward step of torch's Softplus where it switches to the identity (``beta x >
    threshold``): ``log1p(exp(-threshold)) / beta``, 2.1e-9 at the default threshold 20. Below and
    above the switch it is increasing, so ``f(z) >= f(l) - step`` and ``f(z) <= f(u) + step`` on
    ``[l, u]``; the step is visible in float64 (without it IBP returned lower > upper there)."""
    return math.log1p(math.exp(-threshold)) / beta if math.isfinite(threshold) else 0.0


def _widen(box: Box, amount: float) -> Box:
    return Box(box.lower - amount, box.upper + amount) if amount > 0 else box


def _monotone_as_configured(layer: nn.Module) -> bool:
    """Settings under which a listed layer stops being monotone non-decreasing: ELU/CELU with a
    negative alpha, Softplus with beta <= 0 or switching to the identity below its default threshold
    20 (a downward jump of log(1 + e^-t) / beta at the switch, 0.16 at t = 1; the 2.1e-9 of the
    default is added to the box, :func:`softplus_jump`), average pooling with a divisor override (a sum,
    or a negative scale)."""
    if isinstance(layer, (nn.ELU, nn.CELU)):
        return layer.alpha >= 0
    if isinstance(layer, nn.Softplus):
        return layer.beta > 0 and layer.threshold >= 20
    if isinstance(layer, (nn.AvgPool1d, nn.AvgPool2d)):
        return getattr(layer, "divisor_override", None) is None
    return True


def _monotone_function_as_configured(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """:func:`_monotone_as_configured` for the functional forms (positions as in torch.nn.functional)."""
    if target is F.leaky_relu:
        return call_argument(args, kwargs, 1, "negative_slope", 0.01) >= 0
    if target is F.elu:
        return call_argument(args, kwargs, 1, "alpha", 1.0) >= 0
    if target is F.softplus:
        return call_argument(args, kwargs, 1, "beta", 1.0) > 0 and call_argument(args, kwargs, 2, "threshold", 20.0) >= 20
    if target is F.avg_pool2d:
        return call_argument(args, kwargs, 6, "divisor_override", None) is None
    if target in (torch.sum, torch.mean):  # a dtype narrower than the input's is a cast
        return is_exact_cast(target.__name__, args[0].lower.dtype, (), kwargs)
    if target is F.dropout:  # training defaults to True: a random mask per call, whatever model.eval() says
        return call_argument(args, kwargs, 2, "training", True) is False or call_argument(args, kwargs, 1, "p", 0.5) == 0
    return True


def _scale(box: Box, factor: Any) -> Box:
    low, high = box.lower * factor, box.upper * factor
    return Box(torch.minimum(low, high), torch.maximum(low, high))


def propagate_function(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Bounds after a function node with at least one :class:`Box` argument (``NotImplemented``: unsupported)."""
    boxes = [a for a in args if isinstance(a, Box)]
    if target in (operator.add, torch.add) and len(args) == 2 and not kwargs:
        a, b = args
        if isinstance(a, Box) and isinstance(b, Box):
            return Box(a.lower + b.lower, a.upper + b.upper)
        box, constant = (a, b) if isinstance(a, Box) else (b, a)
        return Box(box.lower + constant, box.upper + constant)
    if target in (operator.sub, torch.sub) and len(args) == 2 and not kwargs:
        a, b = args
        if isinstance(a, Box) and isinstance(b, Box):
            return Box(a.lower - b.upper, a.upper - b.lower)
        if isinstance(a, Box):
            return Box(a.lower - b, a.upper - b)
        return Box(a - b.upper, a - b.lower)
    if target in (operator.mul, torch.mul) and len(args) == 2 and len(boxes) == 1 and not kwargs:
        box, factor = (args[0], args[1]) if isinstance(args[0], Box) else (args[1], args[0])
        return _scale(box, factor)
    if target in (operator.truediv, torch.div) and len(args) == 2 and isinstance(args[0], Box) and not isinstance(args[1], Box) and not kwargs:
        # divided as the model divides: x * (1 / c) rounds 1 / c first (in c's dtype, which may be
        # coarser than the model's) and verified a float64 model's counterexample
        low, high = args[0].lower / args[1], args[0].upper / args[1]
        return Box(torch.minimum(low, high), torch.maximum(low, high))
    if target in (operator.neg, torch.neg) and len(args) == 1:
        return Box(-args[0].upper, -args[0].lower)
    if target is builtins.getattr and isinstance(args[0], Box) and args[1] in _SHAPE_ATTRIBUTES:
        return getattr(args[0].lower, args[1])
    if target is torch.cat:
        tensors = args[0]
        if all(isinstance(t, Box) for t in tensors):
            rest = args[1:]
            return Box(torch.cat([t.lower for t in tensors], *rest, **kwargs), torch.cat([t.upper for t in tensors], *rest, **kwargs))
        return NotImplemented
    if target in MONOTONE_FUNCTIONS and len(boxes) == 1 and isinstance(args[0], Box):
        if not _monotone_function_as_configured(target, args, kwargs):
            return NotImplemented
        box = Box(target(args[0].lower, *args[1:], **kwargs), target(args[0].upper, *args[1:], **kwargs))
        if target is F.softplus:
            beta, threshold = call_argument(args, kwargs, 1, "beta", 1.0), call_argument(args, kwargs, 2, "threshold", 20.0)
            box = _widen(box, softplus_jump(beta, threshold))
        return box
    return NotImplemented


def propagate_method(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Bounds after a tensor-method node on a :class:`Box` (``NotImplemented``: unsupported)."""
    box, rest = args[0], args[1:]
    if any(isinstance(a, Box) for a in rest) or any(isinstance(v, Box) for v in kwargs.values()):
        return NotImplemented
    if name in ("size", "dim"):
        return getattr(box.lower, name)(*rest, **kwargs)
    if name in MONOTONE_METHODS and is_exact_cast(name, box.lower.dtype, rest, kwargs):
        return Box(getattr(box.lower, name)(*rest, **kwargs), getattr(box.upper, name)(*rest, **kwargs))
    return NotImplemented


class IntervalInterpreter(TracingInterpreter):
    """Runs a traced model on :class:`Box` values instead of tensors."""

    method = _METHOD
    bound = Box

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module, garbage_collect_values=False)

    def call_module(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not any(isinstance(a, Box) for a in args):
            return super().call_module(target, args, kwargs)
        layer = self.fetch_attr(target)
        if len(args) != 1 or kwargs or not isinstance(args[0], Box) or not standard_forward(layer):
            raise self.fail()
        out = propagate_layer(layer, args[0])
        if out is None:
            raise self.fail()
        return out

    def call_function(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        has_box = any(isinstance(a, Box) for a in args) or any(
            isinstance(a, (list, tuple)) and any(isinstance(b, Box) for b in a) for a in args
        )
        if not has_box:
            return super().call_function(target, args, kwargs)
        out = propagate_function(target, args, kwargs)
        if out is NotImplemented:
            raise self.fail()
        return out

    def call_method(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        done, out = self.bounded_method(target, args, kwargs, Box)
        if done:
            return out
        if not isinstance(args[0], Box):
            return super().call_method(target, args, kwargs)
        out = propagate_method(str(target), args, kwargs)
        if out is NotImplemented:
            raise self.fail()
        return out


def _as_graph(model: nn.Module | fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    return model if isinstance(model, fx.GraphModule) else trace(model, example)


@torch.no_grad()
def interval_bounds(model: nn.Module | fx.GraphModule, box: Box) -> Box:
    """Element-wise bounds of the model's outputs over the input box.

    Raises:
        ConfigError: a layer or operation without an interval rule (the error names it).
    """
    out = IntervalInterpreter(_as_graph(model, box.centre)).run(box)
    if not isinstance(out, Box):
        raise ConfigError("IBP: the model's output does not depend on its input")
    return out


@torch.no_grad()
def margin_lower_bounds(
    model: nn.Module | fx.GraphModule, box: Box, labels: torch.Tensor, fold: bool = True, interpreter: IntervalInterpreter | None = None
) -> torch.Tensor:
    """Lower bounds of ``z_y - z_j`` for every class ``j`` over the input box; ``+inf`` at ``j = y``.

    With ``fold`` and a model ending in ``nn.Linear(W, b)``, the bound is that of the linear map
    ``(W_y - W_j) h + (b_y - b_j)`` on the box of the penultimate features ``h``; otherwise it is
    ``l_y - u_j`` from the logit box.

    Args:
        model: Pixel-space model (or its traced graph).
        box: Input set.
        labels: ``(B,)`` true classes.
        fold: Fold the specification into the last linear layer when possible.
        interpreter: The interpreter to run (on ``model``'s graph), e.g. one that also bounds the
            rounding (:class:`robench.certify._rounding.RoundingInterpreter`).
    """
    graph = interpreter.module if interpreter is not None else _as_graph(model, box.centre)
    assert isinstance(graph, fx.GraphModule)
    interpreter = interpreter if interpreter is not None else IntervalInterpreter(graph)
    logits = interpreter.run(box)
    if not isinstance(logits, Box):
        raise ConfigError("IBP: the model's output does not depend on its input")
    check_labels(labels, logits.lower, _METHOD)
    final = last_linear(graph) if fold else None
    features = interpreter.env.get(final.args[0]) if final is not None else None  # type: ignore[union-attr, arg-type]
    if final is not None and isinstance(features, Box) and features.lower.ndim == 2:
        layer: nn.Linear = graph.get_submodule(str(final.target))  # type: ignore[assignment]
        margins = _folded_margins(layer, features, labels)
    else:
        upper_true = logits.lower.gather(1, labels[:, None])
        margins = upper_true - logits.upper
    return margins.scatter(1, labels[:, None], float("inf"))


def check_labels(labels: torch.Tensor, logits: torch.Tensor, method: str) -> None:
    """Refuses logits other than ``(B, K)`` and labels outside ``[0, K)`` (raw gather errors before)."""
    if logits.ndim != 2:
        raise ConfigError(f"{method}: expected (batch, classes) logits, got shape {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ConfigError(f"{method}: expected {logits.shape[0]} labels, got shape {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ConfigError(f"{method}: labels must lie in [0, {logits.shape[1]}), got {int(labels.min())} to {int(labels.max())}")


def _folded_margins(layer: nn.Linear, features: Box, labels: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    weight = layer.weight
    bias = layer.bias if layer.bias is not None else torch.zeros(weight.shape[0], device=weight.device, dtype=weight.dtype)
    centre, radius = features.centre, features.radius
    out = []
    for start in range(0, labels.shape[0], chunk):
        y = labels[start : start + chunk]
        diff = weight[y][:, None, :] - weight[None, :, :]  # (b, K, D): rows W_y - W_j
        centre_term = torch.einsum("bkd,bd->bk", diff, centre[start : start + chunk])
        radius_term = torch.einsum("bkd,bd->bk", diff.abs(), radius[start : start + chunk])
        out.append(centre_term - radius_term + (bias[y][:, None] - bias[None, :]))
    return torch.cat(out)


ROUNDING_ULPS = 100
"""Units of rounding (the dtype's machine epsilon) a margin bound must clear, relative to the
spread of the logits: bounds and the model both round to nearest, so in float32 a margin bound of
1e-6 over logits of 5 is within rounding of a counterexample (among 15,922 near-boundary linear
models whose float32 margin at the worst corner was negative, IBP had verified 548 and CROWN 680
with a bare ``> 0``)."""


def rounding_tolerance(model: nn.Module | fx.GraphModule, x: torch.Tensor) -> torch.Tensor:
    """``(B,)``: :data:`ROUNDING_ULPS` machine epsilons of ``x``'s dtype times ``1 + (max - min
    logit)`` at ``x`` (about 1e-5 in float32; a shared offset of the logits does not count)."""
    with torch.no_grad():
        logits = model(x).detach()
    spread = (logits.amax(dim=1) - logits.amin(dim=1)).to(x.dtype)
    return ROUNDING_ULPS * torch.finfo(x.dtype).eps * (1.0 + spread)

@torch.no_grad()
def verified(
    model: nn.Module | fx.GraphModule,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    fold: bool = True,
    rounding: bool = True,
) -> torch.Tensor:
    """``(B,)`` flags: every margin lower bound over the eps box exceeds :func:`rounding_tolerance`
    plus, with ``rounding``, the bound on the float model's own rounding over the box
    (:mod:`robench.certify._rounding`): the example is verified.

    The box is the Linf ball; it also encloses the L2 ball of the same radius, so a verified
    example is verified for both norms.
    """
    return verdicts(model, x, labels, eps, bounds, fold, rounding)[0]


@torch.no_grad()
def verdicts(
    model: nn.Module | fx.GraphModule,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    fold: bool = True,
    rounding: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(verified, verified without the rounding allowance)``, both ``(B,)`` (:func:`verified`):
    the second tells how many examples the allowance alone rejects."""
    from robench.certify._rounding import RoundingInterpreter

    graph = _as_graph(model, x)
    box = input_box(x, eps, bounds)
    interpreter = RoundingInterpreter(graph, x.dtype) if rounding else IntervalInterpreter(graph)
    margins = margin_lower_bounds(graph, box, labels, fold, interpreter)
    allowance = interpreter.margin_allowance(labels) if isinstance(interpreter, RoundingInterpreter) else None
    return split_verdicts(margins, rounding_tolerance(graph, x), allowance)


def split_verdicts(margins: torch.Tensor, tolerance: torch.Tensor, allowance: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(verified, verified without the allowance)`` from ``(B, K)`` margin lower bounds, the
    ``(B,)`` :func:`rounding_tolerance` and the ``(B, K)`` rounding allowance (``None``: off)."""
    without = (margins > tolerance[:, None]).all(dim=1)
    if allowance is None:
        return without, without
    return (margins > tolerance[:, None] + allowance).all(dim=1), without

