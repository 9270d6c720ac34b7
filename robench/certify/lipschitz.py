"""Global L2 Lipschitz bounds and the certificates they give.

``L <= prod_layers ||layer||_2`` along the graph, with ``L(a + b) <= L(a) + L(b)`` at residual
additions and ``L([a; b]) <= sqrt(L(a)^2 + L(b)^2)`` at concatenations. Per-layer operator norms:

- Linear: largest singular value (exact SVD).
- Conv (zero padding, any stride, dilation, groups): the ``method="bound"`` default is guaranteed:
  the zero-padded input of size ``m`` embeds isometrically in the torus of size ``m``, where the
  (valid) convolution is a crop of a circular one, whose norm is ``max_w sigma_max(K_hat(w))``
  over the 2-D DFT of the kernel (Sedghi, Gupta & Long 2019); cropping and striding do not
  increase the norm. ``method="power"`` runs power iteration on the convolution operator itself
  (conv then its adjoint via autograd) and multiplies by ``1 + margin``: it approaches the exact
  norm from below, so the margin is a heuristic, not a guarantee.
- Eval BatchNorm ``max |gamma| / sqrt(var + eps)``; the normalisation wrapper ``1 / min(std)``.
- Average pooling (and adaptive average pooling) is separable: ``||P_h|| ||P_w||`` of the exact
  1-D pooling matrices. Max pooling: ``sqrt(c)`` with ``c`` the most windows covering a pixel.
- ReLU, LeakyReLU (``max(1, |slope|)``), Tanh, Hardtanh, ReLU6, ELU (``max(1, alpha)``),
  Softplus with ``threshold=inf``: their largest slope; Sigmoid 1/4. (torch's Softplus switches to
  the identity at ``beta x > threshold``, a downward step of ``log1p(exp(-threshold)) / beta``,
  2.1e-9 at the default 20, which no constant bounds: a finite-difference ratio of 1030 against a
  bound of 1 in float64. A finite threshold is refused.) Flatten, Identity, eval Dropout: 1.

Certified L2 radius of a correctly classified example: ``margin / (sqrt(2) L)`` with ``margin = z_y
- max_{j != y} z_j`` (each logit difference is ``sqrt(2) L``-Lipschitz).
"""

from __future__ import annotations

import builtins
import math
import operator
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from robench._errors import ConfigError
from robench.certify._trace import TracingInterpreter, call_argument, is_exact_cast, standard_forward, trace
from robench.models.wrapper import Normalize

ConvMethod = Literal["bound", "power"]
_METHOD = "Lipschitz"
_SHAPE_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim"})
_SHAPE_METHODS = frozenset({"flatten", "view", "reshape", "contiguous", "clone", "unsqueeze", "squeeze", "float", "to"})
_ACTIVATION_SLOPE: dict[type[nn.Module], Any] = {
    nn.ReLU: 1.0, nn.ReLU6: 1.0, nn.Tanh: 1.0, nn.Hardtanh: 1.0, nn.Softplus: 1.0, nn.Sigmoid: 0.25,
    nn.Hardsigmoid: 1.0 / 6.0, nn.Identity: 1.0, nn.Flatten: 1.0, nn.Unflatten: 1.0, nn.Dropout: 1.0,
    nn.LeakyReLU: lambda m: max(1.0, abs(m.negative_slope)), nn.ELU: lambda m: max(1.0, abs(m.alpha)),
}  # fmt: skip
_FUNCTION_SLOPE: dict[Any, float] = {
    F.relu: 1.0, torch.relu: 1.0, F.relu6: 1.0, torch.tanh: 1.0, F.tanh: 1.0, torch.sigmoid: 0.25,
    F.sigmoid: 0.25, torch.flatten: 1.0, torch.reshape: 1.0, F.softplus: 1.0,
}  # fmt: skip
_METHOD_SLOPE: dict[str, float] = {"relu": 1.0, "tanh": 1.0, "sigmoid": 0.25, **{m: 1.0 for m in _SHAPE_METHODS}}


class Lip(NamedTuple):
    """A value that depends on the input, with a Lipschitz bound of the map input -> value."""

    value: torch.Tensor
    constant: float


def spectral_norm_linear(weight: torch.Tensor) -> float:
    """Largest singular value of a matrix (exact, by SVD)."""
    return float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))


def conv_norm_bound(layer: nn.Conv1d | nn.Conv2d, input_shape: tuple[int, ...]) -> float:
    """Guaranteed upper bound of the L2 operator norm of a zero-padded convolution (module docstring).

    Args:
        layer: The convolution (``padding_mode='zeros'``).
        input_shape: ``(C, H, W)`` (or ``(C, L)``) of one input, without the batch axis.
    """
    _check_padding(layer)
    weight = layer.weight.detach().double()
    spatial = weight.ndim - 2
    pads = layer._reversed_padding_repeated_twice  # (last-dim left, right, previous-dim left, right...)
    sizes = []
    for axis in range(spatial):
        left, right = pads[2 * (spatial - 1 - axis)], pads[2 * (spatial - 1 - axis) + 1]
        sizes.append(int(input_shape[1 + axis]) + int(left) + int(right))
    kernel = _polyphase(_dilate(weight, layer.dilation), layer.stride)
    sizes = [max(-(-max(size, k) // s), p) for size, k, s, p in zip(sizes, weight.shape[2:], layer.stride, kernel.shape[2:])]
    spectrum = torch.fft.fftn(kernel, s=sizes, dim=tuple(range(2, 2 + spatial)))
    groups = layer.groups
    out_per_group, in_per_group = kernel.shape[0] // groups, kernel.shape[1]
    blocks = spectrum.reshape(groups, out_per_group, in_per_group, -1).permute(3, 0, 1, 2)
    return float(torch.linalg.matrix_norm(blocks, ord=2).max())


def _check_padding(layer: nn.Conv1d | nn.Conv2d) -> None:
    if layer.padding_mode != "zeros":
        raise ConfigError(f"Lipschitz: convolution with padding_mode={layer.padding_mode!r} is not supported (only 'zeros')")


def _polyphase(weight: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """A stride-``s`` correlation as a stride-1 one over the ``s^d`` polyphase components of the input.

    ``y[i] = sum_k W[k] x[s i + k] = sum_a sum_p W[s p + a] x_a[i + p]`` with ``x_a[u] = x[s u + a]``;
    the phases are a permutation of the input, so the norms agree.
    """
    if all(s == 1 for s in stride):
        return weight
    spatial = weight.ndim - 2
    padded = [-(-k // s) * s for k, s in zip(weight.shape[2:], stride)]
    pad = []
    for k, p in zip(reversed(weight.shape[2:]), reversed(padded)):
        pad += [0, p - k]
    weight = F.pad(weight, pad)
    shape = [*weight.shape[:2]]
    for p, s in zip(padded, stride):
        shape += [p // s, s]
    phases = weight.reshape(shape)  # (out, in, P1, s1, P2, s2)
    order = [0, 1, *[3 + 2 * i for i in range(spatial)], *[2 + 2 * i for i in range(spatial)]]
    phases = phases.permute(order)  # (out, in, s1, s2, P1, P2)
    return phases.reshape(weight.shape[0], weight.shape[1] * math.prod(stride), *[p // s for p, s in zip(padded, stride)])


def _dilate(weight: torch.Tensor, dilation: tuple[int, ...]) -> torch.Tensor:
    if all(d == 1 for d in dilation):
        return weight
    shape = [*weight.shape[:2], *[d * (k - 1) + 1 for d, k in zip(dilation, weight.shape[2:])]]
    out = weight.new_zeros(shape)
    index = (slice(None), slice(None), *[slice(None, None, d) for d in dilation])
    out[index] = weight
    return out


def power_iteration(
    operator_fn: Any,
    input_shape: tuple[int, ...],
    iterations: int = 100,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Estimate the largest singular value of a linear map by power iteration on ``A^T A``.

    ``A^T`` is applied through autograd (the vector-Jacobian product of ``A``), so this works for
    any linear module evaluated without bias. The estimate converges to the norm from below.

    Args:
        operator_fn: Linear map on tensors of shape ``(1, *input_shape)``.
        input_shape: Shape of one input without the batch axis.
        iterations: Number of ``A^T A`` applications.
        generator: Seeds the starting vector (drawn on ``generator``'s device).
        device: Where ``operator_fn`` computes (its weights' device); the starting vector is moved there.
    """
    draw_on = generator.device if generator is not None else "cpu"
    vector = torch.randn((1, *input_shape), generator=generator, dtype=torch.float64, device=draw_on).to(device or draw_on)
    vector /= vector.norm()
    estimate = 0.0
    for _ in range(iterations):
        vector = vector.detach().requires_grad_(True)
        image = operator_fn(vector)
        (back,) = torch.autograd.grad(image, vector, grad_outputs=image)
        estimate = float(image.detach().norm())
        norm = back.norm()
        if float(norm) == 0.0:
            return 0.0
        vector = back / norm
    with torch.no_grad():
        return max(estimate, float(operator_fn(vector).norm()))


def conv_norm_power(layer: nn.Conv1d | nn.Conv2d, input_shape: tuple[int, ...], iterations: int, margin: float) -> float:
    """Power-iteration estimate of a convolution's norm times ``1 + margin`` (not guaranteed)."""
    weight = layer.weight.detach().double()

    def apply(v: torch.Tensor) -> torch.Tensor:
        return layer._conv_forward(v, weight, None)

    generator = torch.Generator().manual_seed(0)
    return power_iteration(apply, tuple(input_shape), iterations, generator, weight.device) * (1.0 + margin)


def _pool_matrix(size: int, pool: Any) -> torch.Tensor:
    """The ``(size, out)`` matrix of a 1-D pooling ``pool`` (applied to the identity's rows)."""
    eye = torch.eye(size, dtype=torch.float64).unsqueeze(1)  # (size, 1, size): row i is e_i
    return pool(eye).squeeze(1)


def _pair(value: Any, n: int = 2) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def pool_norm(layer: nn.Module, input_shape: tuple[int, ...]) -> float | None:
    """Norm bound of a 2-D average or max pooling layer over inputs of ``input_shape`` (``None``: unsupported)."""
    spatial = input_shape[1:]
    if len(spatial) != 2:
        return None
    matrices = []
    for axis, size in enumerate(spatial):
        if isinstance(layer, nn.AvgPool2d) and layer.divisor_override is not None:
            return None  # a sum (or another scale), not an average
        if isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d)):
            kernel, stride = _pair(layer.kernel_size)[axis], _pair(layer.stride or layer.kernel_size)[axis]
            padding = _pair(layer.padding)[axis]
            if isinstance(layer, nn.MaxPool2d) and _pair(layer.dilation)[axis] != 1:
                return None
            include = getattr(layer, "count_include_pad", True)
            matrix = _pool_matrix(
                size, lambda t: F.avg_pool1d(t, kernel, stride, padding, layer.ceil_mode, include)  # noqa: B023
            )
        elif isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            out = _pair(layer.output_size)[axis] or size
            matrix = _pool_matrix(size, lambda t: F.adaptive_avg_pool1d(t, out))  # noqa: B023
        else:
            return None
        matrices.append(matrix)
    if isinstance(layer, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return math.prod(spectral_norm_linear(m) for m in matrices)
    # max pooling: sqrt of the most windows covering one pixel (per axis, multiplied)
    return math.sqrt(math.prod(int((m > 0).sum(dim=1).max()) for m in matrices))


def normalize_norm(std: torch.Tensor, input_shape: tuple[int, ...], mean: torch.Tensor | None = None) -> float | None:
    """L2 operator norm of ``x -> (x - mean) / std`` on inputs of ``input_shape`` (one example, no
    batch axis), with ``mean`` and ``std`` broadcast against ``(1, *input_shape)`` as the layer
    computes it (a mean of more channels than the std copies the input as much as a std would).

    Every output reads one input element, so the map's columns are orthogonal and its norm is
    ``sqrt(max over input elements of the sum of 1 / std^2 over the outputs that copy it)``: ``1 /
    min std`` when the channels match (NCHW), ``sqrt(sum_c 1 / std_c^2)`` when one grayscale channel
    is broadcast to every std, and the right value for any other layout (a flat ``(D,)`` input is
    copied once per channel too). ``None`` when the shapes do not broadcast.
    """
    full = (1, *(int(n) for n in input_shape))
    try:
        out = torch.broadcast_shapes(full, tuple(std.shape), *(() if mean is None else (tuple(mean.shape),)))
    except RuntimeError:
        return None
    weights = (1.0 / std.detach().double().abs().square()).expand(out)
    # sum over the axes the input is copied along (added leading axes, and its size-1 axes that grow)
    lead = len(out) - len(full)
    copied = [a for a in range(len(out)) if a < lead or (full[a - lead] == 1 and out[a] != 1)]
    per_input = weights.sum(dim=copied) if copied else weights
    return float(per_input.max().sqrt())


def layer_norm_bound(
    layer: nn.Module, input_shape: tuple[int, ...], method: ConvMethod, iterations: int, margin: float, check_only: bool = False
) -> float | None:
    """L2 operator-norm bound of one leaf layer on inputs of ``input_shape`` (``None``: unsupported).

    With ``check_only``, linear and convolution layers are checked but their norms not computed
    (1.0 stands for them): the cheap check that every layer has a rule, before a run starts.
    """
    if isinstance(layer, nn.Linear):
        return 1.0 if check_only else spectral_norm_linear(layer.weight)
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        if method == "bound":
            _check_padding(layer)
        if check_only:
            return 1.0
        if method == "power":
            return conv_norm_power(layer, input_shape, iterations, margin)
        return conv_norm_bound(layer, input_shape)
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        if layer.training or layer.running_var is None:
            raise ConfigError(f"Lipschitz: BatchNorm must be in eval mode with running statistics, got {layer}")
        scale = torch.rsqrt(layer.running_var.double() + layer.eps)
        if layer.weight is not None:
            scale = scale * layer.weight.detach().double()
        return float(scale.abs().max())
    if isinstance(layer, Normalize):
        return normalize_norm(layer.std, input_shape, layer.mean)
    if isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return pool_norm(layer, input_shape)
    slope = _ACTIVATION_SLOPE.get(type(layer))
    if slope is None:
        return None
    if isinstance(layer, nn.Softplus) and (layer.beta <= 0 or math.isfinite(layer.threshold)):
        return None  # a finite threshold is a step (module docstring)
    return float(slope(layer) if callable(slope) else slope)


def power_estimated(graph: fx.GraphModule) -> list[str]:
    """The graph's convolution layers, whose norms ``method: power`` estimates (every other rule
    is exact or an upper bound under either method)."""
    return [str(node.target) for node in graph.graph.nodes
            if node.op == "call_module" and isinstance(graph.get_submodule(str(node.target)), (nn.Conv1d, nn.Conv2d))]  # fmt: skip


class LipschitzInterpreter(TracingInterpreter):
    """Runs a traced model on one example while multiplying per-layer norm bounds along the graph."""

    method = _METHOD
    bound = Lip

    def __init__(
        self, module: fx.GraphModule, method: ConvMethod = "bound", iterations: int = 100, margin: float = 0.05, check_only: bool = False
    ) -> None:
        super().__init__(module)
        self.conv_method, self.iterations, self.margin, self.check_only = method, iterations, margin, check_only
        self.layer_norms: dict[str, float] = {}

    def call_module(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not any(isinstance(a, Lip) for a in args):
            return super().call_module(target, args, kwargs)
        layer = self.fetch_attr(target)
        if len(args) != 1 or kwargs or not standard_forward(layer):
            raise self.fail()
        value = args[0].value
        bound = layer_norm_bound(layer, tuple(value.shape[1:]), self.conv_method, self.iterations, self.margin, self.check_only)
        if bound is None:
            raise self.fail()
        self.layer_norms[str(target)] = bound
        return Lip(layer(value), args[0].constant * bound)

    def call_function(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        lips = [a for a in args if isinstance(a, Lip)]
        nested = [b for a in args if isinstance(a, (list, tuple)) for b in a if isinstance(b, Lip)]
        if not lips and not nested:
            return super().call_function(target, args, kwargs)
        raw = [a.value if isinstance(a, Lip) else a for a in args]
        if target is builtins.getattr:
            if args[1] not in _SHAPE_ATTRIBUTES:  # .data, .mT...: a tensor whose dependence would be lost
                raise self.fail()
            return getattr(args[0].value, args[1])
        elementwise = (operator.add, torch.add, operator.sub, torch.sub, operator.mul, torch.mul, operator.truediv, torch.div)
        if target in elementwise and len(args) == 2 and not kwargs:
            out = target(*raw)
            if any(a.value.shape != out.shape for a in lips):
                raise self.fail()  # broadcasting copies an input-dependent value: its norm grows
            if target in (operator.add, torch.add, operator.sub, torch.sub):
                return Lip(out, sum(a.constant for a in lips))
            if len(lips) == 1:
                dividing = target in (operator.truediv, torch.div)
                if dividing and not isinstance(args[0], Lip):
                    raise self.fail()
                other = torch.as_tensor(raw[1] if isinstance(args[0], Lip) else raw[0]).detach().double().abs()
                factor = 1.0 / float(other.min()) if dividing else float(other.max())
                return Lip(out, lips[0].constant * factor)
        if target in (operator.neg, torch.neg):
            return Lip(-raw[0], lips[0].constant)
        if target is torch.cat and nested and all(isinstance(b, Lip) for b in args[0]):
            values = torch.cat([b.value for b in args[0]], *args[1:], **kwargs)
            return Lip(values, math.sqrt(sum(b.constant**2 for b in args[0])))
        slope = _FUNCTION_SLOPE.get(target)
        if target is F.softplus and (call_argument(args, kwargs, 1, "beta", 1.0) <= 0
                                     or math.isfinite(call_argument(args, kwargs, 2, "threshold", 20.0))):  # fmt: skip
            slope = None  # a finite threshold is a step (module docstring)
        if slope is not None and len(lips) == 1 and isinstance(args[0], Lip):
            return Lip(target(*raw, **kwargs), lips[0].constant * slope)
        raise self.fail()

    def call_method(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        done, out = self.bounded_method(target, args, kwargs, Lip)
        if done:
            return out
        if not isinstance(args[0], Lip):
            return super().call_method(target, args, kwargs)
        value = args[0].value
        if target in ("size", "dim"):
            return getattr(value, target)(*args[1:], **kwargs)
        slope = _METHOD_SLOPE.get(str(target))
        if slope is None or any(isinstance(a, Lip) for a in args[1:]) or not is_exact_cast(str(target), value.dtype, args[1:], kwargs):
            raise self.fail()
        return Lip(getattr(value, target)(*args[1:], **kwargs), args[0].constant * slope)


@torch.no_grad()
def lipschitz_bound(
    model: nn.Module | fx.GraphModule,
    example: torch.Tensor,
    method: ConvMethod = "bound",
    iterations: int = 100,
    margin: float = 0.05,
    check_only: bool = False,
) -> tuple[float, dict[str, float]]:
    """Upper bound of the model's global L2 Lipschitz constant (input pixels -> logits).

    Args:
        model: Pixel-space model or its traced graph.
        example: One input ``(1, C, H, W)`` (fixes the shapes that conv and pooling norms depend on).
        method: ``bound`` (guaranteed conv bound) or ``power`` (power iteration with ``margin``).
        iterations: Power iterations per convolution (``power`` only).
        margin: Relative safety margin on power-iteration estimates.
        check_only: Only check that every layer has a rule (linear and convolution norms are not
            computed; the returned constant is then no bound).

    Returns:
        ``(L, {layer: norm bound})``.

    Raises:
        ConfigError: a layer without a norm bound (named in the message).
    """
    graph = model if isinstance(model, fx.GraphModule) else trace(model, example)
    interpreter = LipschitzInterpreter(graph, method, iterations, margin, check_only)
    with torch.enable_grad() if method == "power" and not check_only else torch.no_grad():
        out = interpreter.run(Lip(example[:1], 1.0))
    if not isinstance(out, Lip):
        raise ConfigError("Lipschitz: the model's output does not depend on its input")
    return out.constant, interpreter.layer_norms


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{j != y} z_j`` per example (negative when misclassified)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(dim=1).values


def certified_l2_radius(logits: torch.Tensor, labels: torch.Tensor, lipschitz: float, slack: torch.Tensor | None = None) -> torch.Tensor:
    """``max(margin, 0) / (sqrt(2) L)`` per example; 0 for misclassified examples. With ``slack``
    ``(B, K)``, what each margin ``z_y - z_j`` must keep for rounding: ``min_j (z_y - z_j - slack_j)``
    takes the margin's place."""
    if slack is None:
        return logit_margin(logits, labels).clamp_min(0) / (math.sqrt(2.0) * lipschitz)
    margins = (logits.gather(1, labels[:, None]) - logits - slack).scatter(1, labels[:, None], math.inf)
    return margins.amin(dim=1).clamp_min(0) / (math.sqrt(2.0) * lipschitz)


@torch.no_grad()
def rounded_l2_radius(
    graph: fx.GraphModule, x: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, lipschitz: float,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """:func:`certified_l2_radius` whose margins keep the float model's own rounding: the radius
    ``r0`` of the float margins gives a box around each L2 ball (the Linf ball of radius ``r0``,
    clipped to ``bounds``); over it the rounding allowance (:mod:`robench.certify._rounding`, twice
    the model's bound: at ``x`` and at the far point) and IBP's rounding tolerance are subtracted
    from each margin, and the radius ``r <= r0`` of what is left keeps its ball inside the box. A
    bias of 20 shared by two logits overstated a float32 margin by 0.7%, and a point at 0.99998 r
    flipped the prediction of a model whose bound L was exact."""
    from robench.certify._rounding import RoundingInterpreter
    from robench.certify.ibp import Box, outward_box, rounding_tolerance

    r0 = certified_l2_radius(logits, labels, lipschitz).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
    box = outward_box(x, r0, bounds)
    interpreter = RoundingInterpreter(graph, x.dtype)
    interpreter.run(Box(torch.minimum(box.lower, x), torch.maximum(box.upper, x)))
    slack = interpreter.margin_allowance(labels) + rounding_tolerance(graph, x)[:, None]
    return certified_l2_radius(logits, labels, lipschitz, slack.to(logits.dtype))
