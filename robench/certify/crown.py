"""CROWN: backward linear relaxation bounds (Zhang et al. 2018, "Efficient Neural Network Robustness
Certification with General Activation Functions"), as auto_LiRPA's ``method='CROWN'``.

The model is traced (:func:`robench.certify._trace.trace`) into a graph of

- affine nodes: the normalisation wrapper, ``nn.Linear``, ``nn.Conv1d/2d``, eval ``nn.BatchNorm1d/2d``,
  ``nn.AvgPool1d/2d`` and ``nn.AdaptiveAvgPool1d/2d`` (as layers or functions),
  ``nn.Flatten``/``flatten``/``view``/``reshape``, ``nn.Identity``/``nn.Dropout``/``contiguous``, and
  addition, subtraction, multiplication and division by constants (tensors that do not depend on
  the input) and negation;
- ReLU (``nn.ReLU``, ``torch.relu``, ``F.relu``, ``.relu()``), the only non-linearity;
- residual additions and subtractions of two input-dependent tensors (the graph is a DAG, not
  necessarily a chain: ResNet and WideResNet blocks are supported).

Anything else (max pooling, other activations, concatenation...) raises a
:class:`~robench.ConfigError` naming the layer; use IBP for those models.

Algorithm (full CROWN). For the input of every ReLU, in topological order, bounds are obtained by
propagating the identity (and its negation, for the upper bound) backward to the input, in reverse
topological order: through an affine node ``f`` by the vector-Jacobian product of ``f`` (autograd;
the constant ``Λ·f(0)`` is added separately), through an addition to both operands (the coefficients
of a tensor used twice are summed), through the earlier ReLUs by their linear relaxation built from
the already computed bounds ``[l, u]``:

- stable neurons are exact (``l >= 0``: identity, ``u <= 0``: zero);
- unstable ones use the upper line ``u / (u - l) · (z - l)`` and the lower line ``α z`` with the
  adaptive slope ``α = 1`` if ``u > -l`` else ``0``; positive coefficients take the lower line,
  negative ones the upper line.

The resulting linear function of the input is concretised over the (clipped) input box
``[max(x - eps, lo), min(x + eps, hi)]`` in centre/radius form ``Λ·mid - |Λ|·rad + c`` (the dual norm
of Linf). The last step starts from the specification ``C`` with rows ``e_y - e_j`` at the logits,
giving lower bounds of the margins ``z_y - z_j``. L2 sets are bounded by their enclosing box (sound,
loose), as for IBP.

CROWN is usually much tighter than IBP but is not guaranteed to be tighter neuron by neuron (the
adaptive lower slope can lose to interval arithmetic on some neurons).

Cost: bounding a ReLU input with ``n`` neurons back-propagates ``2 n`` rows through every earlier
node, each a vector-Jacobian product, so the total is ``O(sum_k 2 n_k · depth)`` node passes per
example: quadratic in depth and linear in the width, far more than IBP's one pass. Memory is bounded
by ``max_elements``: rows and examples are processed in chunks so that about ``max_elements`` numbers
of the coefficients alive at once (two per residual block) are held per pass.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from robench._errors import ConfigError
from robench.certify._rounding import allowance
from robench.certify._trace import ARITHMETIC_METHODS, describe, reinterprets, standard_forward, trace, unsupported
from robench.certify.ibp import Box, _bn_scale_shift, _channel_view, check_labels, input_box, rounding_tolerance, split_verdicts
from robench.models.wrapper import Normalize

_METHOD = "CROWN"
# Leaf layers that are affine maps of their input (the generic VJP handles them all).
AFFINE_LAYERS: tuple[type[nn.Module], ...] = (
    Normalize, nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
)  # fmt: skip
# Functions that are affine (linear) in their first argument when the others are constants.
AFFINE_FUNCTIONS: frozenset[Any] = frozenset({F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d})
_IDENTITY_LAYERS: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout)
_RESHAPE_LAYERS: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten)
_RELU_FUNCTIONS = frozenset({torch.relu, F.relu})
_RESHAPE_FUNCTIONS = frozenset({torch.flatten, torch.reshape})
_RESHAPE_METHODS = frozenset({"flatten", "view", "reshape"})
_IDENTITY_METHODS = frozenset({"contiguous"})
_SHAPE_METHODS = frozenset({"size", "dim"})
_SHAPE_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device"})
_ADD = frozenset({operator.add, torch.add})
_SUB = frozenset({operator.sub, torch.sub})
_MUL = frozenset({operator.mul, torch.mul})
_DIV = frozenset({operator.truediv, torch.div})
_NEG = frozenset({operator.neg, torch.neg})
DEFAULT_MAX_ELEMENTS = 1 << 24
WIDENABLE = (torch.float32, torch.float64)
"""Input dtypes whose model :func:`verdicts` bounds in a wider dtype when asked."""

Map = Callable[[torch.Tensor], torch.Tensor]


class Node(NamedTuple):
    """One input-dependent node of the traced model.

    Attributes:
        kind: ``"input"``, ``"affine"``, ``"relu"``, ``"add"`` or ``"sub"``.
        inputs: Indices of the input-dependent operands (none for the input, two for add/sub).
        fn: The affine map of an ``"affine"`` node, on batches ``(R, *operand shape)``.
        shape: The per-example output shape.
    """

    kind: str
    inputs: tuple[int, ...]
    fn: Map | None
    shape: tuple[int, ...]


class Graph(NamedTuple):
    """A traced ReLU network: nodes in topological order, node 0 the input, the last node the output."""

    nodes: list[Node]
    biases: list[torch.Tensor | None]  # f(0) of every affine node, (1, *shape); None when zero or not affine

    def numel(self, i: int) -> int:
        return int(torch.Size(self.nodes[i].shape).numel())

    def live(self) -> list[int]:
        """Per-example numbers alive while node ``i`` is back-propagated: the coefficients pending on
        the nodes made at or before ``i`` and used after it, plus node ``i``'s own."""
        last_use = {j: i for i, node in enumerate(self.nodes) for j in node.inputs}
        return [
            self.numel(i) + sum(self.numel(j) for j in range(i + 1) if last_use.get(j, -1) > i) for i in range(len(self.nodes))
        ]


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    return node.op == "call_function" and node.target is getattr and len(node.args) > 1 and node.args[1] in _SHAPE_ATTRIBUTES


def _reshape_to(shape: tuple[int, ...]) -> Map:
    return lambda h: h.reshape(h.shape[0], *shape)


def _constant(value: Any, node: fx.Node, graph: fx.GraphModule, ndim: int) -> Any:
    """A constant operand, refused when it carries a batch dimension (it would not broadcast over rows)."""
    if isinstance(value, torch.Tensor) and value.ndim > ndim and value.shape[0] != 1:
        raise unsupported(node, graph, _METHOD)
    return value


def _node_kind(node: fx.Node, graph: fx.GraphModule, ops: list[Any], consts: dict[fx.Node, Any]) -> tuple[str, Map | None]:
    """``("affine", f)``, ``("relu", None)``, ``("identity", None)``, ``("add"|"sub", None)`` for a node
    whose operands ``ops`` are marked ``None`` where input-dependent; raises when unsupported."""
    meta = node.meta.get("tensor_meta")
    if meta is not None and not hasattr(meta, "shape"):  # several outputs (torch.sort, topk, max(dim)...)
        raise unsupported(node, graph, _METHOD)
    out_shape = tuple(meta.shape[1:]) if meta is not None else None
    dependent = [i for i, a in enumerate(ops) if a is None]
    ndim = 1 + len(out_shape) if out_shape is not None else 0

    def const(i: int) -> Any:
        return _constant(ops[i], node, graph, ndim)

    if node.op == "call_module":
        layer = graph.get_submodule(str(node.target))
        if dependent != [0] or len(ops) != 1 or node.kwargs or not standard_forward(layer):
            raise unsupported(node, graph, _METHOD)
        if isinstance(layer, nn.ReLU):
            return "relu", None
        if isinstance(layer, _IDENTITY_LAYERS):
            return "identity", None
        if isinstance(layer, _RESHAPE_LAYERS) and out_shape is not None:
            return "affine", _reshape_to(out_shape)
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if layer.training or layer.running_mean is None or layer.running_var is None:
                raise ConfigError(f"CROWN needs BatchNorm in eval mode with running statistics: {describe(node, graph)}")
            return "affine", _ChannelAffine(*_bn_scale_shift(layer))
        if isinstance(layer, AFFINE_LAYERS):
            return "affine", layer
        raise unsupported(node, graph, _METHOD)
    op, target = node.op, node.target
    if op == "call_method" and str(target) in ARITHMETIC_METHODS:  # buffer.mul(x), x.add(c): the function forms
        op, target = "call_function", ARITHMETIC_METHODS[str(target)]
    if op == "call_function" and len(ops) == 2 and not node.kwargs and target in _ADD | _SUB:
        if dependent == [0, 1]:
            return ("add" if target in _ADD else "sub"), None
        c = const(1 - dependent[0])
        if target in _ADD:
            return "affine", lambda h: h + c
        return "affine", (lambda h: h - c) if dependent == [0] else (lambda h: c - h)
    if op == "call_function" and len(ops) == 2 and not node.kwargs and len(dependent) == 1:
        c = const(1 - dependent[0])
        if target in _MUL:
            return "affine", lambda h: h * c
        if target in _DIV and dependent == [0]:
            return "affine", lambda h: h / c
    if dependent != [0]:
        raise unsupported(node, graph, _METHOD)
    rest, kwargs = [const(i) for i in range(1, len(ops))], {k: consts.get(v, v) if isinstance(v, fx.Node) else v for k, v in node.kwargs.items()}
    if op == "call_function":
        if target in _RELU_FUNCTIONS and set(kwargs) <= {"inplace"} and all(isinstance(a, bool) for a in rest):
            return "relu", None  # F.relu(x, inplace=False)
        if target in _NEG and not rest:
            return "affine", operator.neg
        if target in _RESHAPE_FUNCTIONS and out_shape is not None:
            return "affine", _reshape_to(out_shape)
        if target in AFFINE_FUNCTIONS:
            return "affine", lambda h: target(h, *rest, **kwargs)  # type: ignore[operator]
    if op == "call_method":
        if reinterprets(str(target), rest, kwargs):
            raise unsupported(node, graph, _METHOD)
        if target == "relu" and not rest:
            return "relu", None
        if target in _IDENTITY_METHODS:
            return "identity", None
        if target in _RESHAPE_METHODS and out_shape is not None:
            return "affine", _reshape_to(out_shape)
    raise unsupported(node, graph, _METHOD)


class _ChannelAffine(nn.Module):
    """Eval BatchNorm as the element-wise map ``h * scale + shift`` per channel, with ``scale`` and
    ``shift`` computed once in the model's dtype (:func:`robench.certify.ibp._bn_scale_shift`, as
    IBP and the rounding allowance take them). Autograd's BatchNorm backward used another slope than
    its forward where ``running_var + eps`` cancels, and a float64 layer copy added ``eps`` as a
    float64 number: both verified a float32 counterexample (review of 2026-12-04)."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * _channel_view(self.scale, h) + _channel_view(self.shift, h)


def _widen(value: Any, model_dtype: torch.dtype, dtype: torch.dtype) -> Any:
    """An operand computed in the model's dtype, converted to ``dtype`` (exact for a wider one) at
    the value the model's op uses: a 0-dim tensor first cast to the dtype the op computes in (a 0-dim
    float64 constant times a float32 tensor is a float32 product: 1e-46 is 0 there), a Python float
    first rounded as the model's dtype rounds it (``h * 0.1`` multiplies by float32's 0.1)."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(torch.result_type(torch.empty((1,), dtype=model_dtype), value)).to(dtype)
    if isinstance(value, float) and model_dtype.is_floating_point:
        return float(torch.tensor(value, dtype=model_dtype))
    return value


class _WidenedEnv(dict):  # type: ignore[type-arg]
    """The interpreter's values of the keyword operands, widened as :func:`_widen` does."""

    def __init__(self, env: dict[fx.Node, Any], model_dtype: torch.dtype, dtype: torch.dtype | None) -> None:
        super().__init__(env)
        self.model_dtype, self.dtype = model_dtype, dtype

    def get(self, key: Any, default: Any = None) -> Any:
        value = super().get(key, default)
        return value if self.dtype is None else _widen(value, self.model_dtype, self.dtype)


def parse_graph(module: nn.Module | fx.GraphModule, example: torch.Tensor, dtype: torch.dtype | None = None) -> Graph:
    """The input-dependent part of a traced model as a :class:`Graph` of supported nodes.

    Args:
        module: The model (traced here unless already a ``GraphModule``).
        example: An input batch (its first two examples are run once, for shapes and constants).
        dtype: The arithmetic of the graph's nodes (``None``: the model's). Its operands are first
            computed as the model computes them, in the model's dtype on ``example``'s device
            (parameters, buffers and what the forward derives from them, ``exp(log_scale)``; Python
            numbers as the model's dtype rounds them), then converted, exactly, and layers are
            converted copies: the nodes describe the same real function as the model, whatever
            ``dtype`` they compute it in.

    Raises:
        ConfigError: a node CROWN cannot bound (the error names the first one), a model with other
            than one input, or a model that cannot be traced.
    """
    graph = module if isinstance(module, fx.GraphModule) else trace(module, example)
    with torch.no_grad():
        ShapeProp(graph).propagate(example[:2])
        interpreter = fx.Interpreter(graph, garbage_collect_values=False)
        interpreter.run(example[:2])
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConfigError(f"CROWN: the model must take one input tensor, got {len(placeholders)}")
    index: dict[fx.Node, int] = {placeholders[0]: 0}
    env = interpreter.env if dtype is None else _WidenedEnv(interpreter.env, example.dtype, dtype)  # for keyword operands
    nodes = [Node("input", (), None, tuple(example.shape[1:]))]
    dependent, shapes_only = {placeholders[0]}, set()
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            produced = node.args[0]
            if not isinstance(produced, fx.Node) or produced not in index:
                raise ConfigError("CROWN: the model's output must be one tensor that depends on the input")
            if index[produced] != len(nodes) - 1:  # make the output the last node
                nodes.append(Node("affine", (index[produced],), lambda h: h, nodes[index[produced]].shape))
            break
        if not any(n in dependent for n in node.all_input_nodes):
            continue  # a constant (parameter, buffer) that does not depend on the input
        dependent.add(node)
        if _is_shape_query(node) or all(n in shapes_only for n in node.all_input_nodes if n in dependent):
            shapes_only.add(node)  # shape arithmetic: the shapes are recorded by ShapeProp
            continue
        flat = [*node.args]
        if any(isinstance(a, (list, tuple, dict)) and any(isinstance(b, fx.Node) and b in index for b in a) for a in flat):
            raise unsupported(node, graph, _METHOD)
        if any(isinstance(a, fx.Node) and a in shapes_only and isinstance(interpreter.env.get(a), torch.Tensor) for a in flat):
            # a tensor made from the input's shape (torch.zeros((x.shape[0], K))): one row per example of
            # the traced batch, not a constant that broadcasts
            raise ConfigError(f"{_METHOD}: unsupported {describe(node, graph)}: an operand is a tensor built from the input's shape; "
                              "use a constant that broadcasts over the batch")
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape") and (len(meta.shape) == 0 or meta.shape[0] != len(example[:2])):
            # x.reshape(-1, 32) folding part of each example into the batch: the graph's per-example
            # shapes would not describe it (a raw reshape error before)
            raise ConfigError(f"{_METHOD}: unsupported {describe(node, graph)}: it changes the batch dimension "
                              f"({len(example[:2])} examples in, {tuple(meta.shape)} out); keep the batch as the first dimension")  # fmt: skip
        ops = [None if isinstance(a, fx.Node) and a in index else (interpreter.env.get(a, a) if isinstance(a, fx.Node) else a) for a in flat]
        if dtype is not None:
            ops = [_widen(a, example.dtype, dtype) for a in ops]
        kind, fn = _node_kind(node, graph, ops, env)
        if dtype is not None and isinstance(fn, nn.Module):
            fn = copy.deepcopy(fn).to(dtype)  # an affine layer: its float parameters and buffers convert exactly
        operands = tuple(index[a] for a in flat if isinstance(a, fx.Node) and a in index)
        if kind == "identity":
            index[node] = operands[0]
            continue
        index[node] = len(nodes)
        nodes.append(Node(kind, operands, fn, tuple(node.meta["tensor_meta"].shape[1:])))
    biases: list[torch.Tensor | None] = []
    with torch.no_grad():
        for node in nodes:
            bias = None
            if node.kind == "affine":
                assert node.fn is not None
                zero = torch.zeros((1, *nodes[node.inputs[0]].shape), dtype=dtype or example.dtype, device=example.device)
                bias = node.fn(zero)
                bias = bias if bool((bias != 0).any()) else None
            biases.append(bias)
    return Graph(nodes, biases)


def _vjp(fn: Map, lam: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """``Λ J`` for ``Λ`` of shape ``(R, *out_shape)`` and the (constant) Jacobian ``J`` of the affine ``fn``."""
    with torch.enable_grad():
        h = torch.zeros((lam.shape[0], *in_shape), dtype=lam.dtype, device=lam.device, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(h), h, grad_outputs=lam)
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


def _accumulate(pending: dict[int, torch.Tensor], i: int, lam: torch.Tensor) -> None:
    pending[i] = pending[i] + lam if i in pending else lam


def _backward_lower(graph: Graph, bounds: dict[int, Box], target: int, lam: torch.Tensor, box: Box) -> torch.Tensor:
    """Lower bounds of ``Λ · (output of node target)`` over the box: ``(b, R)``."""
    b, rows = lam.shape[:2]
    constant = torch.zeros((b, rows), dtype=lam.dtype, device=lam.device)
    pending = {target: lam}
    for i in range(target, 0, -1):
        if i not in pending:
            continue
        lam = pending.pop(i)
        node = graph.nodes[i]
        if node.kind == "affine":
            assert node.fn is not None
            bias = graph.biases[i]
            if bias is not None:
                constant = constant + (lam * bias).flatten(2).sum(2)
            in_shape = graph.nodes[node.inputs[0]].shape
            _accumulate(pending, node.inputs[0], _vjp(node.fn, lam.flatten(0, 1), in_shape).view(b, rows, *in_shape))
        elif node.kind == "relu":
            source = bounds[node.inputs[0]]
            lam, extra = _relu_backward(lam, source.lower, source.upper)
            constant = constant + extra
            _accumulate(pending, node.inputs[0], lam)
        else:  # add, sub
            _accumulate(pending, node.inputs[0], lam)
            _accumulate(pending, node.inputs[1], lam if node.kind == "add" else -lam)
    first = pending.get(0)  # (node 1 need not lead to the target)
    if first is None or first.numel() == 0:
        return constant
    flat = first.flatten(2)
    return constant + torch.einsum("brd,bd->br", flat, box.centre.flatten(1)) - torch.einsum("brd,bd->br", flat.abs(), box.radius.flatten(1))


def _node_bounds(graph: Graph, bounds: dict[int, Box], k: int, box: Box, max_elements: int, live: list[int]) -> Box:
    """Bounds of the output of node ``k`` by CROWN, in row chunks."""
    shape = graph.nodes[k].shape
    n, b = graph.numel(k), box.lower.shape[0]
    rows = max(1, min(n, max_elements // max(1, 2 * b * max(live[: k + 1]))))
    lowers, uppers = [], []
    for start in range(0, n, rows):
        count = min(rows, n - start)
        eye = torch.zeros((count, n), dtype=box.lower.dtype, device=box.lower.device)
        eye[torch.arange(count), torch.arange(start, start + count)] = 1.0
        lam = torch.cat([eye, -eye]).view(1, 2 * count, *shape).expand(b, -1, *shape)
        bound = _backward_lower(graph, bounds, k, lam, box)
        lowers.append(bound[:, :count])
        uppers.append(-bound[:, count:])
    return Box(torch.cat(lowers, 1).view(b, *shape), torch.cat(uppers, 1).view(b, *shape))


def _bound(graph: Graph, box: Box, spec: torch.Tensor, max_elements: int) -> torch.Tensor:
    """Lower bounds of ``spec[b] @ logits`` over the box, ``spec``: ``(B, R, K)``; examples in chunks."""
    live = graph.live()
    needed = sorted({node.inputs[0] for node in graph.nodes if node.kind == "relu"})
    largest = max([spec.shape[1]] + [2 * graph.numel(k) for k in needed])
    step = max(1, min(box.lower.shape[0], max_elements // max(1, largest * max(live))))
    out = []
    for start in range(0, box.lower.shape[0], step):
        part = Box(box.lower[start : start + step], box.upper[start : start + step])
        bounds: dict[int, Box] = {0: part}
        for k in needed:
            if k not in bounds:
                bounds[k] = _node_bounds(graph, bounds, k, part, max_elements, live)
        last = len(graph.nodes) - 1
        lam = spec[start : start + step].to(part.lower.dtype).view(-1, spec.shape[1], *graph.nodes[last].shape)
        out.append(_backward_lower(graph, bounds, last, lam, part))
    return torch.cat(out)


def _in_dtype(box: Box, dtype: torch.dtype | None) -> Box:
    """The box in ``dtype`` (a wider float holds its ends exactly: the same set)."""
    return box if dtype is None else Box(box.lower.to(dtype), box.upper.to(dtype))


@torch.no_grad()
def crown_bounds(
    model: nn.Module | fx.GraphModule, box: Box, max_elements: int = DEFAULT_MAX_ELEMENTS, dtype: torch.dtype | None = None
) -> Box:
    """Element-wise CROWN bounds of the model's (flat) outputs over the input box, computed in
    ``dtype`` (``None``: the box's; :func:`parse_graph`).

    Raises:
        ConfigError: the model has a node CROWN cannot bound (the error names the layer).
    """
    graph = parse_graph(model, box.lower, dtype)
    box = _in_dtype(box, dtype)
    k = graph.numel(len(graph.nodes) - 1)
    eye = torch.eye(k, dtype=box.lower.dtype, device=box.lower.device)
    spec = torch.cat([eye, -eye]).expand(box.lower.shape[0], -1, -1)
    bound = _bound(graph, box, spec, max_elements)
    return Box(bound[:, :k], -bound[:, k:])


def specification(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, K, K)`` matrices whose row ``j`` is ``e_y - e_j`` (row ``y`` is zero)."""
    eye = torch.eye(num_classes, dtype=dtype, device=labels.device)
    return eye[labels][:, None, :] - eye[None, :, :]


@torch.no_grad()
def margin_lower_bounds(
    model: nn.Module | fx.GraphModule, box: Box, labels: torch.Tensor, max_elements: int = DEFAULT_MAX_ELEMENTS,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """CROWN lower bounds of ``z_y - z_j`` over the box, ``(B, K)``, ``+inf`` at ``j = y``, computed in
    ``dtype`` (``None``: the box's, which is the model's; :func:`parse_graph`).

    Raises:
        ConfigError: the model has a node CROWN cannot bound, or its output is not ``(B, K)``.
    """
    graph = parse_graph(model, box.lower, dtype)
    box = _in_dtype(box, dtype)
    out_shape = graph.nodes[-1].shape
    if len(out_shape) != 1:
        raise ConfigError(f"CROWN: expected (batch, classes) logits, got per-example shape {out_shape}")
    check_labels(labels, box.lower.new_empty((labels.shape[0], out_shape[0])), _METHOD)
    spec = specification(labels, out_shape[0], box.lower.dtype)
    margins = _bound(graph, box, spec, max_elements)
    return margins.scatter(1, labels[:, None], float("inf"))


@torch.no_grad()
def verified(
    model: nn.Module | fx.GraphModule,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    rounding: bool = True,
    dtype: torch.dtype | None = torch.float64,
) -> torch.Tensor:
    """``(B,)`` flags: every CROWN margin lower bound over the clipped eps box exceeds
    :func:`robench.certify.ibp.rounding_tolerance` plus, with ``rounding``, twice the bound on the
    float model's own rounding over the box (:func:`robench.certify._rounding.allowance`).

    ``dtype``: the arithmetic of the bounds (``None``: the model's; also for inputs other than
    :data:`WIDENABLE`: float16 and bfloat16 ops compute in float32 inside, which the widened operands
    would not follow). In float64 (the default) the
    bounds are those of the model's real function (:func:`parse_graph`), and CROWN's own rounding,
    whose backward products sum over fan-outs where the model's forward pass sums over fan-ins, is
    about 2^-29 of the float32 model's: the allowance's second copy covers it. In the model's
    float32 it is only taken to be of the model's size, which is not proven.

    The box is the Linf ball; it also encloses the L2 ball of the same radius.
    """
    return verdicts(model, x, labels, eps, bounds, max_elements, rounding, dtype)[0]


@torch.no_grad()
def verdicts(
    model: nn.Module | fx.GraphModule,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    rounding: bool = True,
    dtype: torch.dtype | None = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(verified, verified without the rounding allowance)``, both ``(B,)`` (:func:`verified`)."""
    graph = model if isinstance(model, fx.GraphModule) else trace(model, x)
    box = input_box(x, eps, bounds)
    if x.dtype not in WIDENABLE:
        dtype = None
    margins = margin_lower_bounds(graph, box, labels, max_elements, dtype)
    return split_verdicts(margins, rounding_tolerance(graph, x), allowance(graph, box, labels) if rounding else None)
