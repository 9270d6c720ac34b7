"""Tracing a pixel-space model into a torch.fx graph for the bound propagators.

Standard ``torch.nn`` layers and robench's :class:`~robench.models.wrapper.Normalize` stay leaf
calls; containers (``Sequential``, residual blocks written as modules) are traced through, so
residual additions appear as ``add`` nodes. A :class:`~robench.models.wrapper.PixelModel` is
traced as ``net(normalize(x))`` without its pass counter.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from copy import deepcopy
from typing import Any, cast

import torch
from torch import fx, nn
from torch.nn.modules.lazy import LazyModuleMixin

from robench._errors import ConfigError, ModelError, first_line
from robench._numerics import tf32_enabled
from robench.models.wrapper import Normalize, PixelModel

_AUTOCAST_DEVICES = ("cpu", "cuda")


def _arithmetic_state() -> tuple[object, ...]:
    """The settings that change how a traced operation computes without being recorded in the
    graph: the autocast dtype of every device type in :data:`_AUTOCAST_DEVICES` (``None``: off),
    whether CUDA runs float32 convolutions and matmuls in TF32, and the float32 matmul precision."""
    autocast = tuple(torch.get_autocast_dtype(d) if torch.is_autocast_enabled(d) else None for d in _AUTOCAST_DEVICES)
    try:
        matmul: str | None = torch.get_float32_matmul_precision()
    except RuntimeError:  # legacy and per-backend settings mixed
        matmul = None
    return (*autocast, tf32_enabled("conv"), tf32_enabled("matmul"), matmul)


class _Tracer(fx.Tracer):
    """Normalize stays a leaf; a node recorded under other arithmetic settings than the trace
    began in is refused: fx runs a ``with torch.autocast(...)`` block (or a TF32 switch) in the
    forward at trace time and records its operations without it, so the graph computes in float32
    what the model computes in bf16 (IBP verified a point the model itself misclassified, its bf16
    margin -0.0034)."""

    def __init__(self) -> None:
        super().__init__()
        self._state = _arithmetic_state()

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if isinstance(module, Normalize):
            return True
        return super().is_leaf_module(module, qualified_name)

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        if _arithmetic_state() != self._state:
            raise ConfigError("certification: the model's forward enables or changes autocast (torch.autocast) or TF32, which "
                              "the traced graph does not record: the bounds would describe float32 operations the model runs "
                              "in lower precision; remove the switch from the forward")  # fmt: skip
        return super().create_node(*args, **kwargs)


class _Pixel(nn.Module):
    """``net(normalize(x))``: a PixelModel without its counter, so that it can be traced."""

    def __init__(self, normalize: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def call_argument(args: Sequence[Any], kwargs: dict[str, Any], position: int, name: str, default: Any) -> Any:
    """An argument of a traced call, given by position or keyword (``F.softplus(x, 2, 1)``)."""
    return args[position] if len(args) > position else kwargs.get(name, default)


def _inplace_argument(node: fx.Node) -> bool:
    """A function node called with ``inplace=True``, by keyword or by position."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op != "call_function":
        return False
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # builtins without a signature; arguments that do not bind
        return False
    return bound.arguments.get("inplace") is True


def _refuse_in_place(module: fx.GraphModule) -> None:
    """In-place operations left in the graph (``x.add_(...)``, ``F.relu(x, True)``)."""
    for node in module.graph.nodes:
        in_place = _inplace_argument(node) or (
            node.op == "call_method" and str(node.target).endswith("_") and not str(node.target).endswith("__")
        )
        if in_place:
            raise ConfigError(
                f"certification: in-place {describe(node, module)}: the bounds would describe the graph, "
                "not the model that overwrites its tensors; write it out of place"
            )


def trace(model: nn.Module, example: torch.Tensor | None = None) -> fx.GraphModule:
    """The model as a :class:`torch.fx.GraphModule` in eval mode, with no in-place operations.

    The graph is traced from a copy whose layers run out of place (``inplace=False``): an in-place
    ReLU whose input is also used elsewhere (a shortcut) overwrites that input when the model runs,
    which the graph does not record. What the copy cannot undo (``h += branch(x)`` aliasing, which
    fx records as an ordinary addition) is caught by comparing the graph with the model itself on
    ``example`` and on random inputs of its shape, when ``example`` is given.

    Raises:
        ConfigError: the model cannot be traced symbolically (data-dependent control flow...), it
            uses in-place functions or methods, its forward switches autocast or TF32, or the graph does not
            reproduce the model.
    """
    root = _Pixel(model.normalize, model.net) if isinstance(model, PixelModel) else model
    if any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in root.modules()):
        if example is None:
            raise ConfigError("certification: the model has uninitialised lazy layers; run it once on an input first")
        with torch.no_grad():
            root(example[:1].clone())  # materialise them in the model itself, so that the copy has the same weights
    _refuse_hooks(root)
    try:
        copy = deepcopy(root)  # traced and changed; the user's model stays as it is
    except Exception as exc:  # noqa: BLE001 - whatever a layer's __deepcopy__ raises
        raise ConfigError(f"certification: the model cannot be copied for tracing: {first_line(exc)}") from None
    for layer in copy.modules():
        if isinstance(getattr(layer, "inplace", None), bool):
            cast(Any, layer).inplace = False  # a plain attribute, which nn.Module's typing does not know
    try:
        graph = _Tracer().trace(copy)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - fx raises many types; all mean "not traceable"
        raise ConfigError(f"cannot trace the model with torch.fx for certification: {first_line(exc)}") from None
    module = fx.GraphModule(copy, graph)
    module.eval()
    _refuse_in_place(module)
    if example is not None:
        _check_reproduces(module, root, example)
    return module


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks")


def _refuse_hooks(root: nn.Module) -> None:
    """Forward hooks change what a layer computes, but the bound rules read its class's maths and
    weights (a hook scaling a Linear's output put IBP's bounds 0.1 off, and the Lipschitz bound
    below the Jacobian's norm); the traced graph runs them too, so the graph check cannot see it."""
    from torch.nn.modules import module as nn_module

    if any(getattr(nn_module, f"_global{name}", None) for name in _HOOK_DICTS):
        raise ConfigError("certification: global forward hooks are registered (torch.nn.modules.module.register_module_forward_hook); "
                          "the bounds would not describe what they do: remove them")  # fmt: skip
    for name, layer in root.named_modules():
        if any(getattr(layer, attribute, None) for attribute in _HOOK_DICTS):
            hint = " (old-style weight_norm: use torch.nn.utils.parametrizations.weight_norm)" if any(
                "WeightNorm" in type(h).__name__ for h in layer._forward_pre_hooks.values()
            ) else ""  # fmt: skip
            raise ConfigError(
                f"certification: layer '{name or 'model'}' ({type(layer).__name__}) has a forward hook, which the bounds "
                f"would not describe: remove it{hint}"
            )


def _check_reproduces(module: fx.GraphModule, root: nn.Module, example: torch.Tensor) -> None:
    # every layer's own flag, restored as it was: root.train(root.training) set all of them to the
    # root's (a training-mode container around eval BatchNorm came back with its BatchNorm training)
    was_training = {layer: layer.training for layer in root.modules()}
    root.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = [example[:4], torch.rand(example[:4].shape, generator=generator).to(example)]
    try:
        with torch.no_grad():
            for x in inputs:
                try:
                    expected, got = root(x.clone()), module(x.clone())
                except Exception as exc:  # noqa: BLE001 - whatever the model raises, it is the model's failure
                    message = first_line(exc)
                    raise ModelError(f"certification: the model failed while its traced graph was checked: {type(exc).__name__}: {message}") from None
                if not torch.allclose(got, expected, rtol=1e-3, atol=1e-4):
                    worst = float((got - expected).abs().max())
                    raise ConfigError(
                        f"certification: the traced graph does not reproduce the model (outputs differ by {worst:.3g}); "
                        "in-place updates such as `h += branch(x)` are the usual cause: write them out of place"
                    )
    finally:
        for layer, training in was_training.items():
            layer.training = training


def describe(node: fx.Node, module: fx.GraphModule) -> str:
    """A readable name of a node: ``layer 'body.3' (GELU)`` or ``function 'sin'``."""
    if node.op == "call_module":
        layer = module.get_submodule(str(node.target))
        kind = type(layer).__name__ if standard_forward(layer) else f"{type(layer).__module__}.{type(layer).__name__}, with its own forward"
        return f"layer '{node.target}' ({kind})"
    target: Any = node.target
    name = getattr(target, "__name__", str(target))
    return f"{'method' if node.op == 'call_method' else 'function'} '{name}' (node {node.name})"


def unsupported(node: fx.Node, module: fx.GraphModule, method: str) -> ConfigError:
    """The error for a node a propagator cannot bound."""
    return ConfigError(f"{method}: unsupported {describe(node, module)}; supported layers are listed in robench.certify.{method.lower()}")


def last_linear(module: fx.GraphModule) -> fx.Node | None:
    """The ``nn.Linear`` node whose output is the model's output, if there is one."""
    output = next(n for n in module.graph.nodes if n.op == "output")
    produced = output.args[0]
    if isinstance(produced, fx.Node) and produced.op == "call_module":
        layer = module.get_submodule(str(produced.target))
        if isinstance(layer, nn.Linear) and standard_forward(layer):
            return produced
    return None


ARITHMETIC_METHODS: dict[str, Any] = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "neg": torch.neg}
"""Tensor methods the interpreters treat as their function forms: fx records ``buffer * x`` (a
tensor on the left) as the method call ``buffer.mul(x)``, and models write ``x.mul(w)``."""


def standard_forward(layer: nn.Module) -> bool:
    """Whether a leaf layer runs the forward of a ``torch.nn`` class (or robench's Normalize), which
    the bound rules model from its weights. A leaf class that brings its own forward computes
    something else: QAT's ``torch.ao.nn.qat.Linear`` / ``Conv2d`` multiply by fake-quantised weights,
    not the ``.weight`` the rules read (IBP's bounds missed outputs by 0.007 and verified points with
    counterexamples; the Lipschitz bound fell below the layer's norm). So does a forward assigned to
    the instance."""
    if "forward" in layer.__dict__:  # a forward set on the instance (adapters, monkey-patching)
        return False
    for cls in type(layer).__mro__:
        if "forward" in cls.__dict__:
            return cls is Normalize or cls.__module__.startswith("torch.nn.modules.")
    return False


CAST_METHODS = frozenset({"to", "float", "double", "type"})
REDUCTIONS = frozenset({"sum", "mean"})


def reinterprets(name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> bool:
    """Whether the tensor method ``name`` is ``view(dtype)``: the bits read as another type, a step
    function of the values (``x.view(torch.bfloat16)`` passed as a reshape, and Lipschitz bounded by 1
    a model whose difference ratio was 32)."""
    return name == "view" and any(isinstance(v, torch.dtype) for v in (*args, *kwargs.values()))


def is_exact_cast(name: str, source: torch.dtype, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the tensor method ``name`` (with ``args`` after ``self``) moves a ``source`` tensor to
    another device or to a float type at least as precise: the identity on values. A cast to an
    integer or a coarser float type is a step function: no Lipschitz constant, and integer casts of
    negative values wrap, which no interval rule can follow."""
    if reinterprets(name, args, kwargs):
        return False
    if name in REDUCTIONS:  # x.sum(1, dtype=torch.bfloat16): a cast inside the reduction
        wanted = kwargs.get("dtype")
        return wanted is None or (isinstance(wanted, torch.dtype) and wanted.is_floating_point and source.is_floating_point
                                  and torch.finfo(wanted).eps <= torch.finfo(source).eps)  # fmt: skip
    if name not in CAST_METHODS:
        return True
    target: torch.dtype | None = {"float": torch.float32, "double": torch.float64}.get(name)
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.dtype):
            target = value
        elif isinstance(value, torch.Tensor):
            target = value.dtype
        elif isinstance(value, str) and name == "type":
            return False  # a type by name ("torch.HalfTensor"): not worth parsing
    if target is None:
        return True  # a device move
    return target.is_floating_point and source.is_floating_point and torch.finfo(target).eps <= torch.finfo(source).eps


class TracingInterpreter(fx.Interpreter):
    """An :class:`fx.Interpreter` that remembers the node it runs, so that an unsupported layer
    can be named in the error (:meth:`fail`). Subclasses set :attr:`method` (``IBP``...)."""

    method = "certification"
    bound: type | None = None  # the bounded value type (Box, Lip): refused as a keyword argument

    def __init__(self, module: fx.GraphModule, **kwargs: Any) -> None:
        super().__init__(module, **kwargs)
        self._node: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self._node = n
        if self.bound is not None and n.op in ("call_module", "call_function", "call_method") and n.kwargs:
            # the rules read bounded values from the positional arguments only (torch.flatten(input=h))
            _, kwargs = self.fetch_args_kwargs_from_env(n)
            bound = self.bound
            if any(isinstance(v, bound) or isinstance(v, (list, tuple)) and any(isinstance(b, bound) for b in v) for v in kwargs.values()):
                raise self.fail()
        return super().run_node(n)

    def bounded_method(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any], bound: type) -> tuple[bool, Any]:
        """``(True, result)`` for a method node whose arguments hold a ``bound`` value and that is an
        arithmetic method (run as its function form); ``(False, None)`` when no argument is bounded.

        Raises:
            ConfigError: a bounded value reaches a method through another argument than ``self``.
        """
        values = (*args, *kwargs.values())
        if not any(isinstance(a, bound) for a in values):
            return False, None
        function = ARITHMETIC_METHODS.get(str(target))
        if function is not None:
            return True, self.call_function(function, args, kwargs)
        if not isinstance(args[0], bound):
            raise self.fail()
        return False, None

    def fail(self) -> ConfigError:
        """The error naming the node being run."""
        assert self._node is not None
        return unsupported(self._node, self.module, self.method)  # type: ignore[arg-type]
