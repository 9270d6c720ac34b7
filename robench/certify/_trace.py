"""Tracing a pixel-space model into a torch.fx graph for the bound propagators.

Standard ``torch.nn`` layers and robench's :class:`~robench.models.wrapper.Normalize` stay leaf
calls; containers (``Sequential``, residual blocks written as modules) are traced through, so
residual additions appear as ``add`` nodes. A :class:`~robench.models.wrapper.PixelModel` is
traced as ``net(normalize(x))`` without its pass counter.
"""

from __future__ import annotations

import inspect
from copy import deepcopy
from typing import Any

import torch
from torch import fx, nn
from torch.nn.modules.lazy import LazyModuleMixin

from robench._errors import ConfigError
from robench.models.wrapper import Normalize, PixelModel


class _Tracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if isinstance(module, Normalize):
            return True
        return super().is_leaf_module(module, qualified_name)


class _Pixel(nn.Module):
    """``net(normalize(x))``: a PixelModel without its counter, so that it can be traced."""

    def __init__(self, normalize: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(self.normalize(x))


def call_argument(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str, default: Any) -> Any:
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
            uses in-place functions or methods, or the graph does not reproduce the model.
    """
    root = _Pixel(model.normalize, model.net) if isinstance(model, PixelModel) else model
    if any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in root.modules()):
        if example is None:
            raise ConfigError("certification: the model has uninitialised lazy layers; run it once on an input first")
        with torch.no_grad():
            root(example[:1].clone())  # materialise them in the model itself, so that the copy has the same weights
    copy = deepcopy(root)  # traced and changed; the user's model stays as it is
    for layer in copy.modules():
        if isinstance(getattr(layer, "inplace", None), bool):
            layer.inplace = False
    try:
        graph = _Tracer().trace(copy)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; all mean "not traceable"
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot trace the model with torch.fx for certification: {first}") from None
    module = fx.GraphModule(copy, graph)
    module.eval()
    _refuse_in_place(module)
    if example is not None:
        _check_reproduces(module, root, example)
    return module


def _check_reproduces(module: fx.GraphModule, root: nn.Module, example: torch.Tensor) -> None:
    was_training = root.training
    root.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = [example[:4], torch.rand(example[:4].shape, generator=generator).to(example)]
    try:
        with torch.no_grad():
            for x in inputs:
                expected, got = root(x.clone()), module(x.clone())
                if not torch.allclose(got, expected, rtol=1e-3, atol=1e-4):
                    worst = float((got - expected).abs().max())
                    raise ConfigError(
                        f"certification: the traced graph does not reproduce the model (outputs differ by {worst:.3g}); "
                        "in-place updates such as `h += branch(x)` are the usual cause: write them out of place"
                    )
    finally:
        root.train(was_training)


def describe(node: fx.Node, module: fx.GraphModule) -> str:
    """A readable name of a node: ``layer 'body.3' (GELU)`` or ``function 'sin'``."""
    if node.op == "call_module":
        layer = module.get_submodule(str(node.target))
        return f"layer '{node.target}' ({type(layer).__name__})"
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
        if isinstance(module.get_submodule(str(produced.target)), nn.Linear):
            return produced
    return None


ARITHMETIC_METHODS: dict[str, Any] = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "neg": torch.neg}
"""Tensor methods the interpreters treat as their function forms: fx records ``buffer * x`` (a
tensor on the left) as the method call ``buffer.mul(x)``, and models write ``x.mul(w)``."""


class TracingInterpreter(fx.Interpreter):
    """An :class:`fx.Interpreter` that remembers the node it runs, so that an unsupported layer
    can be named in the error (:meth:`fail`). Subclasses set :attr:`method` (``IBP``...)."""

    method = "certification"

    def __init__(self, module: fx.GraphModule, **kwargs: Any) -> None:
        super().__init__(module, **kwargs)
        self._node: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:  # noqa: D102
        self._node = n
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
