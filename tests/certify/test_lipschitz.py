"""Lipschitz bounds: conv norms vs exact SVD, network bound vs gradients and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robench._errors import ConfigError
from robench.certify.lipschitz import (
    certified_l2_radius,
    conv_norm_bound,
    conv_norm_power,
    lipschitz_bound,
    pool_norm,
)
from tests.certify.nets import input_shape, networks

NETS = networks()


def _exact_norm(layer: nn.Module, shape: tuple[int, ...]) -> float:
    """Largest singular value of the layer's unrolled matrix (Jacobian at 0, bias-free)."""
    zero = torch.zeros(math.prod(shape), dtype=torch.float64)
    matrix = torch.autograd.functional.jacobian(lambda v: layer(v.view(1, *shape)).flatten(), zero)
    return float(torch.linalg.matrix_norm(matrix, ord=2))


@pytest.mark.parametrize(
    "stride,padding,dilation,groups,size",
    [(1, 1, 1, 1, 6), (2, 1, 1, 1, 7), (2, 0, 1, 1, 8), (3, 2, 2, 1, 9), (1, 1, 1, 2, 5), (2, 1, 1, 2, 6)],
)
def test_conv_bound_is_above_exact_svd_and_power_iteration_converges(stride, padding, dilation, groups, size) -> None:
    torch.manual_seed(stride * 10 + padding + size)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False).double()
    shape = (4, size, size)
    exact = _exact_norm(conv, shape)
    bound = conv_norm_bound(conv, shape)
    assert exact <= bound * (1 + 1e-9)
    assert bound <= 1.25 * exact  # and not vacuous
    assert conv_norm_power(conv, shape, iterations=300, margin=0.0) == pytest.approx(exact, rel=1e-3)


def test_power_iteration_starts_on_the_device_of_the_weights() -> None:
    """The starting vector was drawn on the CPU whatever the layer's device: method power crashed on
    every convolution of a CUDA model (a CPU input to a CUDA conv). Here ``meta`` stands in for CUDA."""
    from tests._devices import CudaDeviceRule

    conv = nn.Conv2d(2, 3, 3, padding=1).to("meta")
    with CudaDeviceRule():
        conv_norm_power(conv, (2, 5, 5), iterations=2, margin=0.05)
    cpu = nn.Conv2d(2, 3, 3, padding=1).double()  # the same seeded start on every device: the CPU estimate is unchanged
    assert conv_norm_power(cpu, (2, 5, 5), 300, 0.0) == pytest.approx(_exact_norm(cpu, (2, 5, 5)), rel=1e-3)


@pytest.mark.gpu
def test_power_method_on_cuda_matches_cpu() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.Flatten(), nn.Linear(4 * 7 * 7, 5)).eval()
    x = torch.rand(1, 3, 16, 16)
    cpu, _ = lipschitz_bound(net, x, "power", iterations=20)
    cuda, _ = lipschitz_bound(net.cuda(), x.cuda(), "power", iterations=20)
    assert cuda == pytest.approx(cpu, rel=1e-6)  # float64 power iteration from the same start


@pytest.mark.parametrize(
    "layer",
    [nn.AvgPool2d(2), nn.AvgPool2d(3, stride=2, padding=1), nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     nn.AdaptiveAvgPool2d(3), nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1)],
)  # fmt: skip
def test_pool_norms(layer: nn.Module) -> None:
    shape = (2, 7, 7)
    bound = pool_norm(layer, shape)
    if isinstance(layer, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        assert bound == pytest.approx(_exact_norm(layer.double(), shape), rel=1e-9)
    else:  # max pooling: finite-difference ratios never exceed the bound
        generator = torch.Generator().manual_seed(0)
        a, b = torch.rand((2000, *shape), generator=generator), torch.rand((2000, *shape), generator=generator)
        b = a + 0.01 * (b - 0.5)
        ratios = (layer(a) - layer(b)).flatten(1).norm(dim=1) / (a - b).flatten(1).norm(dim=1)
        assert float(ratios.max()) <= bound


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("method", ["bound", "power"])
def test_network_bound_exceeds_gradients_and_finite_differences(name: str, method: str) -> None:
    net = NETS[name]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((64, *input_shape(name)), generator=generator)
    constant, norms = lipschitz_bound(net, x[:1], method=method)
    assert norms and constant > 0
    # spectral norm of the Jacobian at sampled points (power iteration through autograd)
    for point in x[:4]:
        jacobian = torch.autograd.functional.jacobian(lambda v: net(v.unsqueeze(0)).squeeze(0), point)
        assert float(torch.linalg.matrix_norm(jacobian.flatten(1), ord=2)) <= constant * (1 + 1e-5)
    # finite-difference ratios over random pairs, near and far
    for scale in (1e-2, 0.3):
        y = (x + scale * torch.randn(x.shape, generator=generator)).clamp(0, 1)
        with torch.no_grad():
            ratios = (net(x) - net(y)).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
        assert float(ratios.max()) <= constant * (1 + 1e-5)


def test_certified_radius_is_never_crossed(digit_mlp, digits) -> None:
    x, y = digits.load(slice(0, 100))
    constant, _ = lipschitz_bound(digit_mlp, x[:1])
    with torch.no_grad():
        logits = digit_mlp(x)
    radius = certified_l2_radius(logits, y, constant)
    correct = logits.argmax(1) == y
    assert bool((radius[~correct] == 0).all()) and bool((radius[correct] > 0).all())
    from robench.attacks.pgd import PGD

    keep = radius > 0
    # the strongest direction of the linear model is not enough either: PGD at the certified radius
    for index in torch.nonzero(keep).flatten()[:20].tolist():
        result = PGD(steps=30, loss="margin")(digit_mlp, x[index : index + 1], y[index : index + 1], norm="L2", eps=float(radius[index]), bounds=(-10.0, 10.0))
        assert not bool(result.success.any())
    # the bound is not vacuous: the exact Lipschitz constant of the margin is at least the gradient norm
    margin_grad = torch.autograd.functional.jacobian(lambda v: digit_mlp(v.unsqueeze(0))[0], x[0]).flatten(1)
    assert float(torch.linalg.matrix_norm(margin_grad, ord=2)) <= constant


def test_unsupported_layer_is_named() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=r"layer '2' \(GELU\)"):
        lipschitz_bound(net, torch.zeros(1, 1, 2, 2))


def test_check_only_checks_every_layer_without_computing_norms(monkeypatch: pytest.MonkeyPatch) -> None:
    from robench._errors import ConfigError
    from robench.certify import lipschitz

    def no_norms(*args: object) -> float:
        raise AssertionError("a norm was computed")

    monkeypatch.setattr(lipschitz, "spectral_norm_linear", no_norms)
    monkeypatch.setattr(lipschitz, "conv_norm_bound", no_norms)
    example = torch.rand(1, 1, 8, 8)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3))
    lipschitz.lipschitz_bound(net, example, check_only=True)
    with pytest.raises(ConfigError, match="padding_mode='circular'"):
        lipschitz.lipschitz_bound(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")), example, check_only=True)
    with pytest.raises(ConfigError, match="GELU|unsupported"):
        lipschitz.lipschitz_bound(nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.GELU()), example, check_only=True)


def test_grayscale_broadcast_to_three_channels_counts_every_copy() -> None:
    """A 1-channel input normalised with 3 means/stds is copied into 3 channels: the normalisation's
    L2 norm is sqrt(sum 1/std_c^2) (sqrt(3)/0.25 here), and the network bound stays above the
    Jacobian's spectral norm (robench said 4.0 for the layer and a constant 10% below the true one)."""
    from robench.models import load_model
    from robench.threat_model import Preprocessing

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    handle = load_model(net, preprocessing=Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    x = torch.rand(1, 1, 8, 8)
    constant, norms = lipschitz_bound(handle.module, x)
    assert norms["normalize"] == pytest.approx(math.sqrt(3) / 0.25)
    jacobian = torch.autograd.functional.jacobian(lambda v: handle.module(v.view(1, 1, 8, 8)).flatten(), x.flatten())
    assert float(torch.linalg.matrix_norm(jacobian.double(), ord=2)) <= constant * (1 + 1e-6)
    same = load_model(net, preprocessing=Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 0.5)))
    assert lipschitz_bound(same.module, torch.rand(1, 3, 8, 8))[1]["normalize"] == pytest.approx(4.0)


@pytest.mark.parametrize(
    "shape,std,channels",
    [((3, 4, 5), (0.2, 0.5, 0.3), 3), ((1, 4, 5), (0.2, 0.5, 0.3), 3), ((1, 4, 5), (0.5,), 1), ((12,), (0.25, 0.5, 1.0), 3),
     ((4, 5), (0.2, 0.5, 0.3), 3), ((3, 1, 5), (0.2, 0.5, 0.3), 3), ((2, 3, 4, 5), (0.2, 0.5, 0.3), 3),
     ((1, 4, 4), (0.5,), 3), ((12,), (0.5,), 3)],  # a mean of 3 channels copies a grayscale input, std or not
)  # fmt: skip
def test_normalisation_norm_equals_the_svd_of_its_jacobian_in_any_layout(shape, std, channels) -> None:
    """The normalisation's norm is read from how its (1, C, 1, 1) mean and std broadcast against the
    input, not from an (N, C, H, W) layout: flat, 2-D and 4-D inputs (copied once per channel) get
    the exact spectral norm of the layer's Jacobian (the old rule read the first axis as the channels:
    4.0 for a flat (12,) input where 4.58 is right, 5.0 for a (4, 5) one where 6.33 is right; then it
    read the std alone: 2.0 for a grayscale input under a 3-channel mean and one std of 0.5, where
    3.46 is right, and the whole model's bound fell below its Lipschitz constant; review of 2026-12-05)."""
    from robench.certify.lipschitz import normalize_norm
    from robench.models.wrapper import Normalize

    layer = Normalize([0.1 * (c + 1) for c in range(channels)], std).double()
    x = torch.rand(shape, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v.unsqueeze(0)).flatten(), x).reshape(-1, x.numel())
    assert normalize_norm(layer.std, shape, layer.mean) == pytest.approx(float(torch.linalg.matrix_norm(jacobian, ord=2)), rel=1e-12)


def test_a_wider_mean_than_std_keeps_the_model_bound_above_its_lipschitz_constant() -> None:
    from robench.certify.lipschitz import lipschitz_bound
    from robench.models.wrapper import Normalize

    torch.manual_seed(0)
    net = nn.Sequential(Normalize([0.1, 0.2, 0.3], [0.5]), nn.Flatten(), nn.Linear(48, 10)).double().eval()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: net(v.view(1, 1, 4, 4)).flatten(), x.flatten())
    assert float(torch.linalg.matrix_norm(jacobian, ord=2)) <= lipschitz_bound(net, x)[0] * (1 + 1e-9)


def test_normalisation_that_does_not_broadcast_has_no_rule() -> None:
    from robench.certify.lipschitz import normalize_norm

    assert normalize_norm(torch.ones(1, 3, 1, 1), (2, 4, 4)) is None


def test_the_radius_keeps_the_float_models_rounding() -> None:
    """With rows u, -u the bound L = sqrt(2) |u| is exact, and a bias of 20 shared by both logits made
    the float32 margin 0.7% larger than the real one: a float32 point at 0.99998 r, inside [0, 1],
    flipped the prediction (review of 2026-12-04). The radius now keeps the model's rounding
    allowance over the ball's box and IBP's tolerance; no point of a dense ray search flips it."""
    from robench.certify import lipschitz
    from robench.certify._trace import trace

    torch.manual_seed(0)
    d = 3 * 32 * 32
    u = torch.randn(d)
    u /= u.norm()
    weight = torch.stack([u, -u])
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, 2)).eval()
    with torch.no_grad():
        net[1].weight.copy_(weight)
        net[1].bias.fill_(20.0)
    flips_before = flips_after = 0
    # seed 0 finds a flip of the unrounded radius on the 5th draw; 20 draws fail a mutant in seconds
    # (200 made a radius-shrinking mutant loop for minutes before failing)
    for _ in range(20):
        x = torch.rand(1, 3, 32, 32)
        a = float((u.double() * x.double().flatten()).sum())
        x = (x - (a - 0.004) * u.view(1, 3, 32, 32)).clamp(0, 1).float()
        with torch.no_grad():
            constant, _ = lipschitz.lipschitz_bound(net, x)
            logits = net(x)
            y = logits.argmax(1)
            direction = (weight[y] - weight[1 - y]).view_as(x)
            direction = direction / direction.norm()
            for name, r in (("before", float(lipschitz.certified_l2_radius(logits, y, constant))),
                            ("after", float(lipschitz.rounded_l2_radius(trace(net, x), x, logits, y, constant)))):
                steps = r * (1 - torch.linspace(0, 3e-4, 3001, dtype=torch.float64))
                jitter = 1e-8 * torch.randn(len(steps), *x.shape[1:], dtype=torch.float64)
                points = (x.double() - steps.view(-1, 1, 1, 1) * direction.double() + jitter).float()
                inside = ((points.double() - x.double()).flatten(1).norm(dim=1) <= r) & (points >= 0).flatten(1).all(1) & (points <= 1).flatten(1).all(1)
                flips = int((inside & (net(points).argmax(1) != y)).sum())
                if name == "before":
                    flips_before += flips
                else:
                    flips_after += flips
        if flips_before:
            break
    assert flips_before > 0 and flips_after == 0


def _jacobian_norm(net: nn.Module, x: torch.Tensor) -> float:
    """Spectral norm of the Jacobian at ``x`` (one example, float64): a lower bound of the Lipschitz constant."""
    jacobian = torch.autograd.functional.jacobian(lambda v: net(v.view(x.shape)).flatten(), x.flatten())
    return float(np.linalg.norm(jacobian.double().numpy(), 2))


def test_dense_layer_norms_are_the_exact_singular_values() -> None:
    """Linear layers' rule is the exact SVD (numpy's, independent of torch): a Frobenius or other
    looser norm passes every upper-bound test but is not the method's number."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3)).double().eval()
    constant, norms = lipschitz_bound(net, torch.rand(1, 1, 3, 4, dtype=torch.float64))
    w1, w2 = (net[i].weight.detach().numpy() for i in (1, 3))
    assert norms["1"] == pytest.approx(np.linalg.norm(w1, 2), rel=1e-12)
    assert norms["3"] == pytest.approx(np.linalg.norm(w2, 2), rel=1e-12)
    assert constant == pytest.approx(np.linalg.norm(w1, 2) * np.linalg.norm(w2, 2), rel=1e-12)


def test_batchnorm_norm_is_the_largest_absolute_scale_even_when_negative() -> None:
    """Eval BatchNorm is diagonal: its norm is max |gamma| / sqrt(var + eps), equal to the SVD of its
    Jacobian; the largest scale here comes from a negative gamma (a signed max missed it) and eps is
    large enough to matter (dropping it overstated the norm by 40%)."""
    bn = nn.BatchNorm2d(3, eps=0.5).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -3.0, 1.0]))
        bn.running_var.copy_(torch.tensor([0.25, 0.75, 0.1]))
        bn.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1]))
    net, x = nn.Sequential(bn).eval(), torch.rand(1, 3, 2, 2, dtype=torch.float64)
    constant, _ = lipschitz_bound(net, x)
    assert constant == pytest.approx(3.0 / math.sqrt(0.75 + 0.5), rel=1e-12)  # by hand
    assert constant == pytest.approx(_jacobian_norm(net, x), rel=1e-12)


def test_power_iteration_margin_is_applied() -> None:
    """``method: power`` multiplies the converged estimate by ``1 + margin``: without it the estimate
    approaches the exact norm from below, i.e. below a sound bound."""
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
    exact = _exact_norm(conv, (2, 5, 5))
    assert conv_norm_power(conv, (2, 5, 5), iterations=300, margin=0.05) == pytest.approx(1.05 * exact, rel=1e-4)


def test_max_pooling_bound_is_attained() -> None:
    """MaxPool2d(3, stride 2, padding 1): a pixel lies in up to 2 windows per axis, so the bound is
    sqrt(4) = 2, and it is attained by raising the maximum shared by 4 windows (4 outputs move by
    delta): the rule is exact here, neither below (unsound) nor above (loose)."""
    layer = nn.MaxPool2d(3, stride=2, padding=1)
    shape = (1, 7, 7)
    assert pool_norm(layer, shape) == pytest.approx(2.0, rel=1e-12)
    a = torch.zeros(1, *shape, dtype=torch.float64)
    a[0, 0, 3, 3] = 1.0  # the maximum of the windows over rows/columns 1..3 and 3..5 (stride 2)
    b = a.clone()
    b[0, 0, 3, 3] += 0.25
    ratio = float((layer(b) - layer(a)).norm() / (b - a).norm())
    assert ratio == pytest.approx(2.0, rel=1e-12)


class _Combine(nn.Module):
    """``fc(x)`` combined with itself or scaled by constants: the graph rules for +, cat, *, / and -."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how, self.fc = how, nn.Linear(6, 3)
        self.register_buffer("c", torch.tensor([0.5, -3.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.fc(x.flatten(1))
        if self.how == "add":
            return h + h
        if self.how == "cat":
            return torch.cat([h, h], 1)
        if self.how == "mul":
            return h * self.c
        if self.how == "div":
            return h / self.c
        return -h


@pytest.mark.parametrize("how,factor", [("add", 2.0), ("cat", math.sqrt(2.0)), ("mul", 3.0), ("div", 2.0), ("neg", 1.0)])
def test_graph_rules_are_exact_where_the_product_bound_is_tight(how: str, factor: float) -> None:
    """``h + h`` is 2 L(h) (a max of the operands' constants is unsound), ``[h; h]`` is sqrt(2) L(h),
    ``h * c`` max |c| L(h), ``h / c`` L(h) / min |c|, ``-h`` L(h): each is the exact constant of these
    maps, checked against numpy's SVD of the weight and the Jacobian's spectral norm."""
    torch.manual_seed(1)
    net = _Combine(how).double().eval()
    x = torch.rand(1, 1, 2, 3, dtype=torch.float64)
    constant, _ = lipschitz_bound(net, x)
    expected = factor * float(np.linalg.norm(net.fc.weight.detach().numpy(), 2))
    assert constant == pytest.approx(expected, rel=1e-12)
    if how not in ("mul", "div"):  # (a diagonal scaling of W's rows need not reach max |c| ||W||)
        assert constant == pytest.approx(_jacobian_norm(net, x), rel=1e-9)
    assert _jacobian_norm(net, x) <= constant * (1 + 1e-12)


class _Slope(nn.Module):
    """``act(W x + b)`` with ``b = -W x0``: at ``x0`` every pre-activation is 0 (Sigmoid's slope 1/4)
    or, shifted by -1, negative (LeakyReLU's slope 2): the Jacobian there is ``slope * W``."""

    def __init__(self, act: str) -> None:
        super().__init__()
        self.act, self.fc, self.leaky, self.sigmoid = act, nn.Linear(6, 4), nn.LeakyReLU(2.0), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.fc(x.flatten(1))
        if self.act == "module":
            return self.sigmoid(h)
        if self.act == "method":
            return h.sigmoid()
        if self.act == "function":
            return torch.sigmoid(h)
        return self.leaky(h)


@pytest.mark.parametrize("act,slope", [("module", 0.25), ("method", 0.25), ("function", 0.25), ("leaky", 2.0)])
def test_activation_slopes_are_attained(act: str, slope: float) -> None:
    """The largest slope of Sigmoid (1/4, at 0) and LeakyReLU(2) (2, below 0) is the rule; a
    Jacobian at the point where it is reached has exactly that norm times ||W||."""
    torch.manual_seed(2)
    net = _Slope(act).double().eval()
    x0 = torch.rand(1, 1, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        net.fc.bias.copy_(-(net.fc.weight @ x0.flatten()) - (1.0 if act == "leaky" else 0.0))
    constant, _ = lipschitz_bound(net, x0)
    expected = slope * float(np.linalg.norm(net.fc.weight.detach().numpy(), 2))
    assert constant == pytest.approx(expected, rel=1e-12)
    assert _jacobian_norm(net, x0) == pytest.approx(expected, rel=1e-9)


def test_certified_radius_is_the_exact_distance_for_a_tight_linear_model() -> None:
    """Rows ``u, -u``: L = sqrt(2) |u| and the margin's gradient ``2 u`` has norm sqrt(2) L, so
    margin / (sqrt(2) L) is exactly the distance |u.x + b| / |u| to the decision boundary (closed form):
    a radius without the sqrt(2) reached past it, one with 2 fell short."""
    torch.manual_seed(3)
    u = torch.randn(5, dtype=torch.float64)
    net = nn.Sequential(nn.Flatten(), nn.Linear(5, 2)).double().eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([u, -u]))
        net[1].bias.copy_(torch.tensor([0.1, -0.1], dtype=torch.float64))
    x = torch.rand(8, 1, 5, dtype=torch.float64)
    constant, _ = lipschitz_bound(net, x[:1])
    with torch.no_grad():
        logits = net(x)
    y = logits.argmax(1)
    distance = ((x.flatten(1) @ u + 0.1).abs() / u.norm()).numpy()
    for slack in (None, torch.zeros(8, 2, dtype=torch.float64)):
        radius = certified_l2_radius(logits, y, constant, slack)
        np.testing.assert_allclose(radius.numpy(), distance, rtol=1e-10)


def test_conv_bound_uses_the_padded_torus_closed_form() -> None:
    """The 1-D kernel (-1, 1, -1) along the width with zero padding 1 on 5 x 5 inputs is I (x) T with T
    the 5 x 5 tridiagonal Toeplitz matrix: its norm is 1 + 2 cos(pi / 6) = 1 + sqrt(3) (eigenvalues
    1 - 2 cos(j pi / 6)). The guaranteed bound is the torus of the padded size 7: 1 + 2 cos(pi / 7);
    a torus of the unpadded size 5 gives 1 + 2 cos(pi / 5), below the true norm."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1] = torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64)
    exact = _exact_norm(conv, (1, 5, 5))
    assert exact == pytest.approx(1 + math.sqrt(3), rel=1e-12)
    bound = conv_norm_bound(conv, (1, 5, 5))
    assert bound == pytest.approx(1 + 2 * math.cos(math.pi / 7), rel=1e-12)
    assert bound >= exact


def test_the_rounded_radius_keeps_the_allowance_and_tolerance_written_out() -> None:
    """``rounded_l2_radius`` for Linear(16, 2) with rows u, -u and a shared bias of 20: the margin keeps
    twice the model's rounding ``e_k = gamma_17 (|W_k| m + |b_k|) + 17 eta`` of both logits over the box
    of radius ``r0`` (Higham, by hand in float64) and IBP's tolerance ``100 eps (1 + spread)``, then
    ``/ (sqrt(2) L)`` with L = ||W||_2 from numpy: a radius keeping only the tolerance, or without the
    sqrt(2) on that path, is above it."""
    from robench.certify import lipschitz
    from robench.certify._trace import trace

    torch.manual_seed(10)
    u = torch.randn(16)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([u, -u]))
        net[1].bias.fill_(20.0)
    x = torch.rand(3, 16, generator=torch.Generator().manual_seed(4)) * 0.5 + 0.25
    with torch.no_grad():  # move x to within 0.01 of the boundary, margin 2 u.x
        x = x - ((x @ u - 0.005) / u.norm() ** 2)[:, None] * u
        logits = net(x)
    y = logits.argmax(1)
    constant = float(np.linalg.norm(net[1].weight.detach().double().numpy(), 2))
    radius = lipschitz.rounded_l2_radius(trace(net, x), x, logits, y, constant).double()
    z = logits.double()
    margin = (z.gather(1, y[:, None]) - z).abs().amax(1)
    r0 = margin / (math.sqrt(2) * constant)
    xd = x.double()
    m = torch.maximum((xd - r0[:, None]).clamp(0, 1).abs(), (xd + r0[:, None]).clamp(0, 1).abs())
    gamma, eta = 17 * 2.0**-24 / (1 - 17 * 2.0**-24), 2.0**-149
    e = gamma * (m @ u.double().abs() + 20.0) + 17 * eta  # the same for both rows
    slack = 2 * (e + e) + 100 * 2.0**-23 * (1 + margin)
    expected = (margin - slack).clamp_min(0) / (math.sqrt(2) * constant)
    assert bool((expected > 0).all()) and bool((slack / margin > 1e-3).all())  # the slack matters here
    torch.testing.assert_close(radius, expected, rtol=2e-5, atol=0)
