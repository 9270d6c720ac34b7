"""CROWN: backward linear relaxation bounds (Zhang et al. 2018, "Efficient Neural Network Robustness
Certification with General Activation Functions"), as auto_LiRPA's ``method='CROWN'``.

The model must trace (:func:`robench.certify._trace.trace`) to a chain
``x -> A_0 -> ReLU -> A_1 -> ReLU -> ... -> A_m -> logits`` where every ``A_j`` is a composition of
affine layers: the normalisation wrapper, ``nn.Linear``, ``nn.Conv1d/2d``, eval ``nn.BatchNorm1d/2d``,
``nn.AvgPool1d/2d``, ``nn.Flatten``/``flatten``/``view``/``reshape``, ``nn.Identity``/``nn.Dropout``.
ReLU is the only non-linearity (``nn.ReLU``, ``torch.relu``, ``F.relu``, ``.relu()``). Anything else
(residual additions, max pooling, other activations) raises a :class:`~robench.ConfigError` naming the
layer; use IBP for those models.

Algorithm (full CROWN). For every ReLU layer ``k`` in order, the bounds of its pre-activation
``z_k`` are obtained by propagating the identity (and its negation, for the upper bound) backward to
the input: through ``A_j`` by the vector-Jacobian product of ``A_j`` (autograd; the constant
``Λ·A_j(0)`` is added separately), through the earlier ReLUs by their linear relaxation built from
the already computed bounds ``[l, u]``:

- stable neurons are exact (``l >= 0``: identity, ``u <= 0``: zero);
- unstable ones use the upper line ``u / (u - l) · (z - l)`` and the lower line ``α z`` with the
  adaptive slope ``α = 1`` if ``u > -l`` else ``0``; positive coefficients take the lower line,
  negative ones the upper line.

The resulting linear function of the input is concretised over the (clipped) input box
``[max(x - eps, lo), min(x + eps, hi)]`` in centre/radius form ``Λ·mid - |Λ|·rad + c`` (the dual norm
of Linf). The last step starts from the specification ``C`` with rows ``e_y - e_j`` (folded into the
last affine map), giving lower bounds of the margins ``z_y - z_j``. L2 sets are bounded by their
enclosing box (sound, loose), as for IBP.

CROWN is usually much tighter than IBP but is not guaranteed to be tighter neuron by neuron (the
adaptive lower slope can lose to interval arithmetic on some neurons).

Cost: bounding layer ``k`` (``n_k`` neurons) back-propagates ``2 n_k`` rows through ``k`` affine
segments, each a vector-Jacobian product (one forward and one backward of that segment per row), so
the total is ``O(sum_k 2 n_k · depth)`` segment passes per example: quadratic in depth and linear in
the width, far more than IBP's one pass. Memory is bounded by ``max_elements``: rows and examples are
processed in chunks so that at most about ``max_elements`` numbers of the widest activation are alive
per pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from robench._errors import ConfigError
from robench.certify._trace import describe, trace, unsupported
from robench.certify.ibp import Box, input_box
from robench.models.wrapper import Normalize

_METHOD = "CROWN"
# Leaf layers that are affine maps of their input (the generic VJP handles them all).
AFFINE_LAYERS: tuple[type[nn.Module], ...] = (
    Normalize, nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
)  # fmt: skip
_IDENTITY_LAYERS: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout)
_RESHAPE_LAYERS: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten)
_RELU_FUNCTIONS = frozenset({torch.relu, F.relu})
_RESHAPE_FUNCTIONS = frozenset({torch.flatten, torch.reshape})
_RESHAPE_METHODS = frozenset({"flatten", "view", "reshape"})
_IDENTITY_METHODS = frozenset({"contiguous"})
_SHAPE_METHODS = frozenset({"size", "dim"})
_SHAPE_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device"})
DEFAULT_MAX_ELEMENTS = 1 << 24

Map = Callable[[torch.Tensor], torch.Tensor]


class Chain(NamedTuple):
    """A traced ReLU network as affine segments ``A_0 .. A_m`` separated by ``m`` ReLU layers.

    Attributes:
        segments: ``m + 1`` lists of affine maps (an empty list is the identity).
        shapes: ``m + 2`` per-example shapes: the input, then the output of every segment.
    """

    segments: list[list[Map]]
    shapes: list[tuple[int, ...]]


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    return node.op == "call_function" and node.target is getattr and len(node.args) > 1 and node.args[1] in _SHAPE_ATTRIBUTES


def _reshape_to(shape: tuple[int, ...]) -> Map:
    return lambda h: h.reshape(h.shape[0], *shape)


def _node_map(node: fx.Node, module: fx.GraphModule) -> Map | str | None:
    """The affine map of a chain node, ``"relu"``, ``"identity"``, or ``None`` when unsupported."""
    out_shape = tuple(node.meta["tensor_meta"].shape[1:]) if "tensor_meta" in node.meta else None
    if node.op == "call_module":
        layer = module.get_submodule(str(node.target))
        if isinstance(layer, nn.ReLU):
            return "relu"
        if isinstance(layer, _IDENTITY_LAYERS):
            return "identity"
        if isinstance(layer, _RESHAPE_LAYERS) and out_shape is not None:
            return _reshape_to(out_shape)
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) and (layer.running_mean is None or layer.running_var is None):
            raise ConfigError(f"CROWN needs BatchNorm with running statistics: {describe(node, module)}")
        if isinstance(layer, AFFINE_LAYERS):
            return layer
        return None
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return "relu"
        if node.target in _RESHAPE_FUNCTIONS and out_shape is not None:
            return _reshape_to(out_shape)
        return None
    if node.op == "call_method":
        if node.target == "relu":
            return "relu"
        if node.target in _IDENTITY_METHODS:
            return "identity"
        if node.target in _RESHAPE_METHODS and out_shape is not None:
            return _reshape_to(out_shape)
    return None


def parse_chain(module: nn.Module | fx.GraphModule, example: torch.Tensor) -> Chain:
    """Split a traced model into affine segments and ReLU layers.

    Args:
        module: The model (traced here unless already a ``GraphModule``).
        example: A ``(B, ...)`` input batch with ``B >= 2`` or any batch (used for shapes only).

    Raises:
        ConfigError: the model is not a chain of supported layers (the error names the first
            offending node) or cannot be traced.
    """
    graph = module if isinstance(module, fx.GraphModule) else trace(module)
    with torch.no_grad():
        ShapeProp(graph).propagate(example[:2])
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConfigError(f"CROWN: the model must take one input tensor, got {len(placeholders)}")
    current = placeholders[0]
    dependent, shapes_only = {current}, set()
    segments: list[list[Map]] = [[]]
    shapes = [tuple(example.shape[1:])]
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise ConfigError("CROWN: the model's output is not the end of a single chain of layers")
            break
        inputs = [n for n in node.all_input_nodes if n in dependent and n not in shapes_only]
        if not any(n in dependent for n in node.all_input_nodes):
            continue  # a constant (parameter, buffer) that does not depend on the input
        dependent.add(node)
        if not inputs or _is_shape_query(node):
            shapes_only.add(node)  # shape arithmetic: the chain's shapes are recorded by ShapeProp
            continue
        if inputs != [current] or not node.args or node.args[0] is not current:
            raise unsupported(node, graph, _METHOD)
        kind = _node_map(node, graph)
        if kind is None:
            raise unsupported(node, graph, _METHOD)
        if kind == "relu":
            shapes.append(tuple(node.meta["tensor_meta"].shape[1:]))
            segments.append([])
        elif kind != "identity":
            segments[-1].append(kind)  # type: ignore[arg-type]
        current = node
    shapes.append(tuple(current.meta["tensor_meta"].shape[1:]) if current.op != "placeholder" else shapes[0])
    return Chain(segments, shapes)


def _apply(maps: Sequence[Map], h: torch.Tensor) -> torch.Tensor:
    for fn in maps:
        h = fn(h)
    return h


def _vjp(maps: Sequence[Map], lam: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """``Λ J`` for ``Λ`` of shape ``(R, *out_shape)`` and the (constant) Jacobian ``J`` of the affine ``maps``."""
    if not maps:
        return lam.reshape(lam.shape[0], *in_shape)
    with torch.enable_grad():
        h = torch.zeros((lam.shape[0], *in_shape), dtype=lam.dtype, device=lam.device, requires_grad=True)
        (grad,) = torch.autograd.grad(_apply(maps, h), h, grad_outputs=lam)
    return grad


def _relu_backward(lam: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Λ`` through a ReLU for a lower bound: new coefficients on ``z`` and the constant term.

    ``lam``: ``(b, R, *shape)``; ``lower``/``upper``: ``(b, *shape)`` pre-activation bounds.
    """
    active, inactive = lower >= 0, upper <= 0
    unstable = ~(active | inactive)
    width = torch.where(unstable, upper - lower, torch.ones_like(upper))
    upper_slope = torch.where(active, 1.0, torch.where(unstable, upper / width, 0.0)).to(lam.dtype)
    upper_intercept = torch.where(unstable, -lower * upper_slope, 0.0).to(lam.dtype)
    lower_slope = (active | (unstable & (upper > -lower))).to(lam.dtype)
    positive, negative = lam.clamp(min=0), lam.clamp(max=0)
    new = positive * lower_slope[:, None] + negative * upper_slope[:, None]
    constant = (negative * upper_intercept[:, None]).flatten(2).sum(2)
    return new, constant


def _backward_lower(
    chain: Chain, bounds: list[Box], last: int, lam: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor
) -> torch.Tensor:
    """Lower bounds of ``Λ · (output of segment last)`` over the box: ``(b, R)``."""
    b, rows = lam.shape[:2]
    constant = torch.zeros((b, rows), dtype=lam.dtype, device=lam.device)
    for j in range(last, -1, -1):
        maps, in_shape = chain.segments[j], chain.shapes[j]
        if maps:
            zero = torch.zeros((1, *in_shape), dtype=lam.dtype, device=lam.device)
            bias = _apply(maps, zero)
            constant = constant + (lam * bias).flatten(2).sum(2)
        lam = _vjp(maps, lam.flatten(0, 1), in_shape).view(b, rows, *in_shape)
        if j > 0:
            lam, extra = _relu_backward(lam, bounds[j - 1].lower, bounds[j - 1].upper)
            constant = constant + extra
    flat = lam.flatten(2)
    return constant + torch.einsum("brd,bd->br", flat, centre.flatten(1)) - torch.einsum("brd,bd->br", flat.abs(), radius.flatten(1))


def _layer_bounds(chain: Chain, bounds: list[Box], k: int, box: Box, max_elements: int) -> Box:
    """Bounds of the output of segment ``k`` (pre-activation of ReLU ``k + 1``) by CROWN, in row chunks."""
    shape = chain.shapes[k + 1]
    n, b = int(torch.Size(shape).numel()), box.lower.shape[0]
    widest = max(int(torch.Size(s).numel()) for s in chain.shapes[: k + 2])
    rows = max(1, min(n, max_elements // max(1, 2 * b * widest)))
    lowers, uppers = [], []
    for start in range(0, n, rows):
        count = min(rows, n - start)
        eye = torch.zeros((count, n), dtype=box.lower.dtype, device=box.lower.device)
        eye[torch.arange(count), torch.arange(start, start + count)] = 1.0
        lam = torch.cat([eye, -eye]).view(1, 2 * count, *shape).expand(b, -1, *shape)
        bound = _backward_lower(chain, bounds, k, lam, box.centre, box.radius)
        lowers.append(bound[:, :count])
        uppers.append(-bound[:, count:])
    return Box(torch.cat(lowers, 1).view(b, *shape), torch.cat(uppers, 1).view(b, *shape))


def _chunks(chain: Chain, batch: int, rows: int, max_elements: int) -> int:
    widest = max(int(torch.Size(s).numel()) for s in chain.shapes)
    largest = max([rows] + [2 * int(torch.Size(s).numel()) for s in chain.shapes[1:-1]])
    return max(1, min(batch, max_elements // max(1, largest * widest)))


def _bound(chain: Chain, box: Box, spec: torch.Tensor, max_elements: int) -> torch.Tensor:
    """Lower bounds of ``spec[b] @ logits`` over the box, ``spec``: ``(B, R, K)``; examples in chunks."""
    m = len(chain.segments) - 1
    out = []
    step = _chunks(chain, box.lower.shape[0], spec.shape[1], max_elements)
    for start in range(0, box.lower.shape[0], step):
        part = Box(box.lower[start : start + step], box.upper[start : start + step])
        bounds: list[Box] = []
        for k in range(m):
            bounds.append(_layer_bounds(chain, bounds, k, part, max_elements))
        lam = spec[start : start + step].to(part.lower.dtype).view(-1, spec.shape[1], *chain.shapes[-1])
        out.append(_backward_lower(chain, bounds, m, lam, part.centre, part.radius))
    return torch.cat(out)


@torch.no_grad()
def crown_bounds(model: nn.Module | fx.GraphModule, box: Box, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Box:
    """Element-wise CROWN bounds of the model's (flat) outputs over the input box.

    Raises:
        ConfigError: the model is not a chain of supported layers (the error names the layer).
    """
    chain = parse_chain(model, box.lower)
    k = int(torch.Size(chain.shapes[-1]).numel())
    eye = torch.eye(k, dtype=box.lower.dtype, device=box.lower.device)
    spec = torch.cat([eye, -eye]).expand(box.lower.shape[0], -1, -1)
    bound = _bound(chain, box, spec, max_elements)
    return Box(bound[:, :k], -bound[:, k:])


def specification(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, K, K)`` matrices whose row ``j`` is ``e_y - e_j`` (row ``y`` is zero)."""
    eye = torch.eye(num_classes, dtype=dtype, device=labels.device)
    return eye[labels][:, None, :] - eye[None, :, :]


@torch.no_grad()
def margin_lower_bounds(
    model: nn.Module | fx.GraphModule, box: Box, labels: torch.Tensor, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> torch.Tensor:
    """CROWN lower bounds of ``z_y - z_j`` over the box, ``(B, K)``, ``+inf`` at ``j = y``.

    Raises:
        ConfigError: the model is not a chain of supported layers, or its output is not ``(B, K)``.
    """
    chain = parse_chain(model, box.lower)
    if len(chain.shapes[-1]) != 1:
        raise ConfigError(f"CROWN: expected (batch, classes) logits, got per-example shape {chain.shapes[-1]}")
    spec = specification(labels, chain.shapes[-1][0], box.lower.dtype)
    margins = _bound(chain, box, spec, max_elements)
    return margins.scatter(1, labels[:, None], float("inf"))


@torch.no_grad()
def verified(
    model: nn.Module | fx.GraphModule,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> torch.Tensor:
    """``(B,)`` flags: every CROWN margin lower bound over the clipped eps box is ``> 0``.

    The box is the Linf ball; it also encloses the L2 ball of the same radius.
    """
    margins = margin_lower_bounds(model, input_box(x, eps, bounds), labels, max_elements)
    return (margins > 0).all(dim=1)
