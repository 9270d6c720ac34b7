"""Tracing a pixel-space model into a torch.fx graph for the bound propagators.

Standard ``torch.nn`` layers and robench's :class:`~robench.models.wrapper.Normalize` stay leaf
calls; containers (``Sequential``, residual blocks written as modules) are traced through, so
residual additions appear as ``add`` nodes. A :class:`~robench.models.wrapper.PixelModel` is
traced as ``net(normalize(x))`` without its pass counter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

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


def trace(model: nn.Module) -> fx.GraphModule:
    """The model as a :class:`torch.fx.GraphModule` in eval mode.

    Raises:
        ConfigError: the model cannot be traced symbolically (data-dependent control flow...).
    """
    root = _Pixel(model.normalize, model.net) if isinstance(model, PixelModel) else model
    try:
        graph = _Tracer().trace(root)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; all mean "not traceable"
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot trace the model with torch.fx for certification: {first}") from None
    module = fx.GraphModule(root, graph)
    module.eval()
    return module


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

    def fail(self) -> ConfigError:
        """The error naming the node being run."""
        assert self._node is not None
        return unsupported(self._node, self.module, self.method)  # type: ignore[arg-type]
