"""Threat-model norms as values: distance, projection, random start and steepest-ascent step."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from robench._errors import ConfigError


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class Norm(ABC):
    """An Lp norm on per-example perturbations ``delta`` of shape ``(N, ...)``."""

    name: str

    @abstractmethod
    def distance(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-example norm ``(N,)``."""

    @abstractmethod
    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """Euclidean projection onto the ball of radius ``eps``."""

    @abstractmethod
    def random(self, like: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        """A random perturbation inside the ball."""

    @abstractmethod
    def step(self, grad: torch.Tensor, step_size: float, sparsity: float = 0.0) -> torch.Tensor:
        """Steepest-ascent direction of this norm scaled to length ``step_size``."""

    def __repr__(self) -> str:
        return self.name


def _rand(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None, kind: str) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


class LinfNorm(Norm):
    """L-infinity: projection clips, the step is the gradient's sign."""

    name = "Linf"

    def distance(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().amax(dim=1)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        return delta.clamp(-eps, eps)

    def random(self, like: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        return (2 * _rand(like.shape, like, generator, "uniform") - 1) * eps

    def step(self, grad: torch.Tensor, step_size: float, sparsity: float = 0.0) -> torch.Tensor:
        return grad.sign() * step_size


class L2Norm(Norm):
    """L2: projection rescales, the step is the normalised gradient."""

    name = "L2"

    def distance(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).norm(p=2, dim=1)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        norms = self.distance(delta).clamp_min(1e-12)
        return delta * _view(torch.clamp(eps / norms, max=1.0), delta)

    def random(self, like: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        direction = _rand(like.shape, like, generator, "normal")
        direction = direction / _view(self.distance(direction).clamp_min(1e-12), like)
        dims = _flat(like).shape[1]
        radius = _rand(torch.Size([like.shape[0]]), like, generator, "uniform") ** (1.0 / dims) * eps
        return direction * _view(radius, like)

    def step(self, grad: torch.Tensor, step_size: float, sparsity: float = 0.0) -> torch.Tensor:
        return grad / _view(self.distance(grad).clamp_min(1e-12), grad) * step_size


class L1Norm(Norm):
    """L1: projection onto the L1 ball (Duchi et al. 2008); a sparse step (SLIDE, Tramer & Boneh 2019)."""

    name = "L1"

    def distance(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().sum(dim=1)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """Sort-based projection: soft-threshold ``|delta|`` at the theta that makes its sum ``eps``."""
        flat = _flat(delta)
        magnitude = flat.abs()
        inside = magnitude.sum(dim=1) <= eps
        ordered, _ = magnitude.sort(dim=1, descending=True)
        cumulative = ordered.cumsum(dim=1)
        ranks = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
        condition = ordered * ranks > (cumulative - eps)
        rho = condition.to(flat.dtype).mul(ranks).argmax(dim=1)
        theta = (cumulative.gather(1, rho[:, None]) - eps) / (rho[:, None] + 1).to(flat.dtype)
        projected = flat.sign() * (magnitude - theta).clamp_min(0)
        projected = torch.where(inside[:, None], flat, projected)
        return projected.reshape(delta.shape)

    def random(self, like: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        # Laplace direction with a radius uniform in the ball's volume.
        uniform = _rand(like.shape, like, generator, "uniform").clamp(1e-7, 1 - 1e-7)
        laplace = -torch.sign(uniform - 0.5) * torch.log1p(-2 * (uniform - 0.5).abs())
        laplace = laplace / _view(self.distance(laplace).clamp_min(1e-12), like)
        dims = _flat(like).shape[1]
        radius = _rand(torch.Size([like.shape[0]]), like, generator, "uniform") ** (1.0 / dims) * eps
        return laplace * _view(radius, like)

    def step(self, grad: torch.Tensor, step_size: float, sparsity: float = 0.95) -> torch.Tensor:
        """Move along the sign of the top ``1 - sparsity`` fraction of gradient coordinates."""
        flat = _flat(grad)
        magnitude = flat.abs()
        k = max(1, int(round((1.0 - sparsity) * flat.shape[1])))
        threshold = magnitude.topk(k, dim=1).values[:, -1:]
        direction = flat.sign() * (magnitude >= threshold).to(flat.dtype)
        direction = direction / direction.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
        return (direction * step_size).reshape(grad.shape)


NORMS: dict[str, Norm] = {"Linf": LinfNorm(), "L2": L2Norm(), "L1": L1Norm()}


def get_norm(name: str | Norm) -> Norm:
    """The norm called ``name`` (``Linf``, ``L2`` or ``L1``)."""
    if isinstance(name, Norm):
        return name
    if name not in NORMS:
        raise ConfigError(f"unknown norm {name!r}; expected one of {sorted(NORMS)}")
    return NORMS[name]
