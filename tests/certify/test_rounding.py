"""The float model's own rounding: the bound holds against a float64 evaluation of the same
network, is small on ordinary networks, and stops a network built to exploit rounding (Jia &
Rinard 2021) from being verified."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robench.certify import crown, ibp
from robench.certify._rounding import output_rounding, unit_roundoff
from robench.certify._trace import trace
from robench.certify.ibp import input_box
from robench.models.wrapper import Normalize
from tests.certify.nets import input_shape, networks

NETS = networks()


@pytest.mark.parametrize("scale", [1.0, 300.0])
@pytest.mark.parametrize("name", sorted(NETS))
def test_the_bound_contains_the_float32_rounding_measured_against_float64(name: str, scale: float) -> None:
    net = copy.deepcopy(NETS[name])
    with torch.no_grad():  # large weights: large intermediate values, large rounding
        for layer in net.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                layer.weight.mul_(scale)
                if layer.bias is not None:
                    layer.bias.mul_(scale)
    exact = copy.deepcopy(net).double()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((3, *input_shape(name)), generator=generator)
    box = input_box(x, 0.05)
    bound = output_rounding(trace(net, x), box)
    u = torch.rand((400, *x.shape), generator=generator)
    points = (box.lower + u * (box.upper - box.lower)).flatten(0, 1)
    with torch.no_grad():
        error = (net(points).double() - exact(points.double())).abs().view(400, x.shape[0], -1)
    assert (error <= bound.double()).all(), float((error - bound.double()).max())
    assert float(error.max()) > 0  # the check sees rounding at all
    with torch.no_grad():
        spread = float(net(points).abs().max())
    if scale == 1.0:  # and on ordinary weights the bound stays small beside the logits
        assert float(bound.max()) < 1e-3 * (1.0 + spread)


def _cancelling(bias: float) -> nn.Module:
    """Jia & Rinard's construction: a huge bias the next layer cancels, so the logit is a
    difference of two rounded large numbers."""
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [0.0]]))
        net[0].bias.fill_(bias)
        net[2].weight.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
        net[2].bias.copy_(torch.tensor([0.25, 0.0]))
    return net


def test_a_network_built_on_rounding_is_not_verified() -> None:
    x, y = torch.tensor([[0.6]]), torch.tensor([1])
    net = _cancelling(1e7)
    # in float32, 1e7 + 0.5 rounds to 1e7: the model predicts class 0 at x = 0.5, inside the ball
    assert net(torch.tensor([[0.5]])).argmax(1).item() == 0
    assert not ibp.verified(net, x, y, 0.1) and not crown.verified(net, x, y, 0.1)
    # without the allowance both verify it (the bounds of the real-valued network are right)
    assert ibp.verified(net, x, y, 0.1, rounding=False) and crown.verified(net, x, y, 0.1, rounding=False)
    # the same construction with a bias the float32 arithmetic represents well is verified
    modest = _cancelling(10.0)
    points = torch.linspace(0.5, 0.7, 1001)[:, None]
    assert (modest(points).argmax(1) == 1).all()
    assert ibp.verified(modest, x, y, 0.1) and crown.verified(modest, x, y, 0.1)


class _OverlappingPool(nn.Module):
    """2^24 + small terms summed by a 64-wide average pooling with stride 1, the 2^24 cancelled
    after: in float32 the small terms are lost (an error of 51 where the bound assumed windows of
    numel(in) / numel(out) = 3 terms, and CROWN verified a misclassified box)."""

    def __init__(self) -> None:
        super().__init__()
        big = torch.zeros(1, 127)
        big[0, 0] = 2.0**24
        self.register_buffer("big", big)
        self.register_buffer("big_out", big[:, None, :64].clone())
        self.pool = nn.AvgPool1d(64, stride=1)
        self.fc = nn.Linear(64, 2)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[1, 0] = 1.0
            self.fc.bias.copy_(torch.tensor([30.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = (x * 2.0 + self.big).view(x.shape[0], 1, 127)
        return self.fc((self.pool(h) * 64.0 - self.big_out).flatten(1))


def _subnormal(threshold: float) -> nn.Module:
    """A first layer whose outputs are float32 subnormals (weight 7 * 2^-149), scaled back by
    2^149 later: there rounding is absolute, which no relative bound covers."""
    net = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 1), nn.Linear(1, 2)).eval()
    with torch.no_grad():
        net[0].weight.fill_(7 * 2.0**-149)
        net[0].bias.zero_()
        net[1].weight.fill_(2.0**100)
        net[1].bias.zero_()
        net[2].weight.copy_(torch.tensor([[0.0], [2.0**49]]))
        net[2].bias.copy_(torch.tensor([0.0, -threshold]))
    return net


@pytest.mark.parametrize("case", ["overlapping_pool", "subnormal"])
def test_constructions_from_the_review_are_bounded_and_not_verified(case: str) -> None:
    if case == "overlapping_pool":
        net, x, y, eps = _OverlappingPool().eval(), torch.full((1, 127), 0.6), torch.tensor([1]), 0.15
    else:
        net, x, y, eps = _subnormal(3.2), torch.tensor([[3.8 / 7]]), torch.tensor([1]), 0.4 / 7
    box = input_box(x, eps)
    with torch.no_grad():
        float32 = net(box.lower)
        exact = copy.deepcopy(net).double()(box.lower.double())
    assert float32.argmax(1).item() != y.item()  # the float model is wrong at the box's corner
    assert ((float32.double() - exact).abs() <= output_rounding(trace(net, x), box).double()).all()
    assert not ibp.verified(net, x, y, eps) and not crown.verified(net, x, y, eps)


@pytest.mark.parametrize("op", ["div_rounding_mode", "sum_in_bfloat16", "mean_in_bfloat16"])
def test_operations_that_round_by_design_are_refused(op: str) -> None:
    from robench._errors import ConfigError

    class Op(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            if op == "div_rounding_mode":
                h = torch.div(x * 10.0, 1.0, rounding_mode="floor")  # floor(10 x), bounded as 10 x before
            elif op == "sum_in_bfloat16":
                h = x.sum(1, keepdim=True, dtype=torch.bfloat16).float() * torch.ones(1, 4)
            else:
                h = torch.mean(x, 1, keepdim=True, dtype=torch.bfloat16).float() * torch.ones(1, 4)
            return self.fc(h)

    x = torch.rand(2, 4)
    with pytest.raises(ConfigError, match="IBP: unsupported"):
        ibp.interval_bounds(Op().eval(), input_box(x, 0.01))


def test_the_unit_roundoff_is_the_coarsest_dtype_the_model_computes_in() -> None:
    net = nn.Linear(2, 2)
    assert unit_roundoff(net, torch.float32) == torch.finfo(torch.float32).eps / 2
    assert unit_roundoff(net.double(), torch.float64) == torch.finfo(torch.float64).eps / 2
    assert unit_roundoff(net.double(), torch.float32) == torch.finfo(torch.float32).eps / 2


@pytest.mark.parametrize("clip", ["relu", "relu6", "hardtanh", "relu_function", "relu_method"])
def test_no_error_passes_a_clip_whose_input_box_lies_beyond_its_limit(clip: str) -> None:
    """Neurons provably off (their box far below 0) output exactly 0 in float and in real arithmetic:
    their error must not grow through the next layer's |W| (on a 7-layer IBP-trained MNIST CNN that
    growth made the allowance 3-4 logits and rejected 278 of 328 IBP-verified digits)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = nn.Linear(4, 8), nn.Linear(8, 2)
            self.clip = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "hardtanh": nn.Hardtanh(0.0, 1.0)}.get(clip, nn.Identity())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.first(x)
            h = torch.relu(h) if clip == "relu_function" else h.relu() if clip == "relu_method" else self.clip(h)
            return self.second(h)

    net = Net().eval()
    with torch.no_grad():
        net.first.weight.fill_(1e3)
        net.first.bias.fill_(-1e5)  # the pre-activation lies in [-1e5, -9.6e4] over [0, 1]^4
        net.second.weight.fill_(1e3)
        net.second.bias.fill_(0.5)
    x = torch.full((1, 4), 0.5)
    error = output_rounding(trace(net, x), input_box(x, 0.5))
    assert float(error.max()) < 1e-6  # only the last layer's own rounding of 0.5 (was ~2e2)
    with torch.no_grad():
        net.first.bias.fill_(-2e3)  # now unstable: the error passes as before
    assert float(output_rounding(trace(net, x), input_box(x, 0.5)).max()) > 1e-3


def test_the_box_holds_every_float_within_eps() -> None:
    """``x - eps`` in float32 rounds to nearest, so for about half the pixels its end lay inside the
    real ball: a float32 input within eps of x (in real arithmetic) fell outside the verified box."""
    from robench.certify.ibp import input_box

    x = torch.rand(4096, generator=torch.Generator().manual_seed(0))
    inward = 0
    for eps in (8 / 255, 0.3, 1e-3, 0.1):
        box = input_box(x, eps, (-10.0, 10.0))  # bounds far away: no clipping
        assert bool((box.lower.double() <= x.double() - eps).all()) and bool((box.upper.double() >= x.double() + eps).all())
        inward += int(((x - eps).double() > x.double() - eps).sum())  # where the box used to start
        # and hardly wider: within two float32 steps of the real ends
        step = torch.finfo(torch.float32).eps * (x.double().abs() + eps)
        assert bool(((x.double() - eps) - box.lower.double() <= 2 * step).all())
    assert inward > 1000
    exact = input_box(x, 0.0)
    assert torch.equal(exact.lower, x) and torch.equal(exact.upper, x)


def test_normalize_rounding_in_the_subnormal_range_is_not_divided_by_the_std() -> None:
    """A std of 3e38 puts x / std among float32's subnormals, where the division rounds by up to half
    the smallest subnormal in output units; the allowance divided that by std too, and CROWN (float64)
    verified x = 1e-5, which the float32 model misclassifies everywhere in its box (third review)."""
    from robench.certify import crown
    from robench.models.wrapper import Normalize

    l1, l2 = nn.Linear(1, 1, bias=False), nn.Linear(1, 2)
    with torch.no_grad():
        l1.weight.fill_(2.0**126)  # subnormal ulps -> 2^-23 units
        l2.weight.copy_(torch.tensor([[-(2.0**23)], [0.0]]))  # logit 0 = 23.9 - (x / std in subnormal ulps)
        l2.bias.copy_(torch.tensor([23.9, 0.0]))
    model = nn.Sequential(Normalize([0.0], [3e38]), nn.Flatten(), l1, l2).eval()
    x, y, eps = torch.tensor([[[[1e-5]]]]), torch.tensor([0]), 1e-9
    with torch.no_grad():
        assert int(model(x).argmax(1)) == 1 and int(model((x + eps).clamp(0, 1)).argmax(1)) == 1
    for dtype in (torch.float64, None):
        assert not bool(crown.verified(model, x, y, eps, dtype=dtype).any())
    assert not bool(ibp.verified(model, x, y, eps).any())


def test_an_activation_scale_after_subnormal_steps_is_in_the_allowance() -> None:
    """CELU computes alpha * expm1(z * (1 / alpha)): with alpha 5.2e30, z / alpha is subnormal, and its
    absolute rounding comes out alpha times larger; the allowance's CELU rule did not scale it, and at
    the smallest bias IBP verified, the lowest float32 of the ball was misclassified (fourth review)."""
    import numpy as np

    alpha, x, eps, y = 5.199959881463322e30, torch.tensor([[0.28877773880958557]]), 0.028889786452054977, torch.tensor([0])

    def build(c: float) -> nn.Module:
        l1, l2 = nn.Linear(1, 1), nn.Linear(1, 2)
        with torch.no_grad():
            l1.weight.fill_(1.0479882317377125e-15)
            l1.bias.fill_(-1.0093922919729437e-10)
            l2.weight.copy_(torch.tensor([[1e14], [0.0]]))
            l2.bias.copy_(torch.tensor([c, 0.0]))
        return nn.Sequential(l1, nn.CELU(alpha=alpha), l2).eval()

    with torch.no_grad():
        s0 = float(build(0.0)(x)[0, 0])
    low, high = -s0 - 1.0, -s0 + 1e9
    assert bool(ibp.verified(build(high), x, y, eps))
    for _ in range(80):  # the smallest bias IBP verifies
        mid = (low + high) / 2
        low, high = (low, mid) if bool(ibp.verified(build(mid), x, y, eps)) else (mid, high)
    lowest = np.float32(float(np.float32(x.item())) - eps)
    if float(lowest) < float(np.float32(x.item())) - eps:
        lowest = np.nextafter(lowest, np.float32(1))
    with torch.no_grad():
        assert int(build(high)(torch.tensor([[float(lowest)]])).argmax(1)) == 0


def test_a_node_nested_in_a_tuple_argument_is_resolved() -> None:
    """``torch.reshape(x, (x.shape[0], -1))`` holds a graph node inside a tuple: the allowance passed it
    on unresolved and IBP (and the Lipschitz radius) failed with a raw TypeError (review)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.reshape(x, (x.shape[0], -1)))

    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    net = Net().eval()
    y = net(x).argmax(1)
    assert bool(ibp.verified(net, x, y, 0.0).all())


@pytest.mark.parametrize("beta", [0.1, 0.3, 0.7, 5.0])
def test_softplus_rounding_of_its_scaled_input_is_in_the_bound(beta: float) -> None:
    """torch's Softplus computes log1p(exp(beta z)) / beta: the rounding of beta * z, u |beta z|, is
    many units of the output where the output is small, and the bound, in units of the output, missed
    it (Softplus(0.3) at z = -13.6 rounded 1.5 times the bound away from float64)."""
    net = nn.Sequential(nn.Softplus(beta)).eval()
    z = torch.linspace(-200.0, 0.0, 400_001).view(-1, 1)
    bound = output_rounding(trace(net, z[:2]), ibp.Box(z, z)).double()
    with torch.no_grad():
        error = (net(z).double() - copy.deepcopy(net).double()(z.double())).abs()
    assert bool((error <= bound).all())


def test_the_linear_rule_is_highams_bound_written_out() -> None:
    """One Linear layer of fan-in n over a box: the bound is ``|W| (gamma m) + gamma |b| + (n + 1) eta``
    with ``gamma = (n + 1) u / (1 - (n + 1) u)`` (Higham, Sec. 3.1), ``u = 2^-24``, ``m = max(|l|, |u|)``
    and ``eta`` float32's smallest subnormal; the margin allowance is twice ``e_y + e_j``. Computed here
    in float64 by hand: a dropped denominator, a fan-in without the bias term, a missing |W| m or |b|
    term, or a single copy of the allowance are all below the method's bound."""
    from robench.certify._rounding import allowance

    n = 1000
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(n, 3)).eval()
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([40.0, -3.0, 0.5]))
    x = torch.rand(2, n, generator=torch.Generator().manual_seed(1)) * 2 - 1
    box = input_box(x, 0.01, (-2.0, 2.0))
    u, eta = 2.0**-24, 2.0**-149
    gamma = (n + 1) * u / (1 - (n + 1) * u)
    w, b = net[0].weight.detach().double(), net[0].bias.detach().double()
    m = torch.maximum(box.lower.double().abs(), box.upper.double().abs())
    expected = gamma * m @ w.abs().T + gamma * b.abs() + (n + 1) * eta
    bound = output_rounding(trace(net, x), box).double()
    torch.testing.assert_close(bound, expected, rtol=1e-5, atol=0)  # float32 arithmetic of the bound itself
    labels = torch.tensor([2, 0])
    allowed = allowance(trace(net, x), box, labels).double()
    torch.testing.assert_close(allowed, 2 * (expected.gather(1, labels[:, None]) + expected), rtol=1e-5, atol=0)


def test_an_error_passes_a_relu_whose_box_ends_within_twice_the_error_below_zero() -> None:
    """``_clipped`` zeroes the error only where the box lies beyond the clip by twice the error (the
    model's rounding and the verifier's own, which may have put the computed upper end below the
    real one): here z = 2e4 x - 1e4 - 0.0255 rounds by e = gamma_2 (2e4 |x| + |b|) = 2.4e-3 and its
    box ends at -1.8 e, so e passes and the next layer's weight 1e3 makes it 1e3 e (by hand); with
    the end at -6 e, none passes. A rule with no margin (or one e) zeroed the first too."""
    u, eta = 2.0**-24, 2.0**-149
    x = torch.tensor([[0.5]])
    box = input_box(x, 1e-6)

    def error(bias: float) -> tuple[float, float, float]:
        net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1, bias=False)).eval()
        with torch.no_grad():
            net[0].weight.fill_(2e4)
            net[0].bias.fill_(bias)
            net[2].weight.fill_(1e3)
            b = float(net[0].bias)
        e = 2 * u / (1 - 2 * u) * (2e4 * float(box.upper) + abs(b)) + 2 * eta
        top = float(ibp.interval_bounds(nn.Sequential(net[0]).eval(), box).upper)
        return float(output_rounding(trace(net, x), box)), e, top

    bound, e, top = error(-1e4 - 0.0255)
    assert -2 * e < top < -e  # the case: below 0 by more than e, less than 2 e
    assert bound == pytest.approx(1e3 * e, rel=1e-4)
    bound, e, top = error(-1e4 - 0.035)
    assert top < -2 * e and bound < 1e-30


class _AfterLinear(nn.Module):
    """``Linear(4, 3)`` then one element-wise rule (or the normaliser before it)."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op, self.fc, self.bn = op, nn.Linear(4, 3), nn.BatchNorm1d(3, eps=0.1)
        self.norm = Normalize([0.2, -0.1, 0.3, 0.0], [0.5, 2.0, 0.25, 1.0])
        self.register_buffer("c", torch.tensor([0.5, -3.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.op == "normalize":
            return self.fc(self.norm(x).flatten(1))
        h = self.fc(x)
        return {"batchnorm": lambda: self.bn(h), "add": lambda: h + 7.0, "mul": lambda: h * self.c, "div": lambda: h / self.c,
                "residual": lambda: h + h}[self.op]()  # fmt: skip


@pytest.mark.parametrize("op", ["batchnorm", "add", "mul", "div", "residual", "normalize"])
def test_elementwise_rules_after_a_linear_layer_are_the_documented_bounds(op: str) -> None:
    """Linear(4, 3) (error e by Higham's bound, its box ``W c +- |W| r``, both by hand in float64) then
    one rule of the module docstring, written out: BatchNorm ``|s| e + 8 (u (|s| (m + |mean|) + |beta|)
    + eta)``, a constant added ``e + u (|out| + e) + eta``, a factor ``|c| e + u |c| m + eta``, a divisor
    ``(e + 2 u m) / |c| + 2 eta``, ``h + h`` ``2 e + u (|out| + 2 e) + eta``, the normaliser first ``8 (u (|x| +
    |mean|) + eta) / std + 8 eta`` (``m``: the float input's magnitude, box plus error). A rule passing
    ``e`` on unscaled, or dividing where it should multiply, or without its own rounding, is below it."""
    torch.manual_seed(8)
    net = _AfterLinear(op).eval()
    with torch.no_grad():
        net.bn.weight.copy_(torch.tensor([2.0, -5.0, 0.5]))
        net.bn.bias.copy_(torch.tensor([0.3, -0.2, 4.0]))
        net.bn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        net.bn.running_var.copy_(torch.tensor([0.5, 1.5, 3.0]))
    x = torch.rand(2, 4, generator=torch.Generator().manual_seed(2))
    x = x.view(2, 4, 1, 1) if op == "normalize" else x  # NCHW for the normaliser's (1, C, 1, 1) statistics
    box = input_box(x, 0.05)
    u, eta = 2.0**-24, 2.0**-149
    low, high = box.lower.double().flatten(1), box.upper.double().flatten(1)
    w, b = net.fc.weight.detach().double(), net.fc.bias.detach().double()
    e0 = torch.zeros_like(low)
    if op == "normalize":
        mean, std = net.norm.mean.double().view(1, 4), net.norm.std.double().view(1, 4)
        e0 = 8 * (u * (torch.maximum(low.abs(), high.abs()) + mean.abs()) + eta) / std + 8 * eta
        low, high = (low - mean) / std, (high - mean) / std
    gamma = 5 * u / (1 - 5 * u)
    mid, rad = (low + high) / 2 @ w.T + b, (high - low) / 2 @ w.abs().T
    m_in = torch.maximum(low.abs(), high.abs()) + e0
    e = (e0 + gamma * m_in) @ w.abs().T + gamma * b.abs() + 5 * eta
    magnitude = (mid.abs() + rad)
    m = magnitude + e
    c = net.c.double()
    if op == "batchnorm":
        s = (net.bn.weight.double() / torch.sqrt(net.bn.running_var.double() + 0.1)).abs()
        expected = s * e + 8 * (u * (s * (m + net.bn.running_mean.double().abs()) + net.bn.bias.double().abs()) + eta)
    elif op == "add":
        expected = e + u * ((mid + 7.0).abs() + rad + e) + eta
    elif op == "mul":
        expected = c.abs() * e + u * c.abs() * m + eta
    elif op == "div":
        expected = (e + 2 * u * m) / c.abs() + 2 * eta
    elif op == "residual":
        expected = 2 * e + u * (2 * magnitude + 2 * e) + eta
    else:
        expected = e
    bound = output_rounding(trace(net, x), box).double()
    torch.testing.assert_close(bound, expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("op", ["conv", "conv_avgpool", "conv_adaptive", "leaky_relu"])
def test_convolution_pooling_and_activation_rules_are_the_documented_bounds(op: str) -> None:
    """Conv1d(2, 3, 3) has fan-in 6: ``e = |W| * (gamma_7 m) + gamma_7 |b| + 7 eta`` (the convolution of
    the magnitudes, in float64); AvgPool1d(2) after it adds ``avg(e) + gamma_3 avg(|box| + e) + 3 eta``,
    AdaptiveAvgPool1d(2) on 5 values windows of up to ceil(5 / 2) + 1 = 4 terms (gamma_5, 5 eta);
    LeakyReLU(3) after Linear(4, 3) ``3 e + 4 u (|out| + 3 e) + 4 tiny``. A fan-in without the kernel
    size, a dropped ``gamma m``, a window of n (not n + 1) terms or an unscaled slope is below it."""
    import torch.nn.functional as F

    u, eta, tiny = 2.0**-24, 2.0**-149, torch.finfo(torch.float32).tiny
    torch.manual_seed(9)
    if op == "leaky_relu":
        net = nn.Sequential(nn.Linear(4, 3), nn.LeakyReLU(3.0)).eval()
        x = torch.rand(2, 4, generator=torch.Generator().manual_seed(3)) - 0.5
        box = input_box(x, 0.05, (-1.0, 1.0))
        low, high = box.lower.double(), box.upper.double()
        w, b = net[0].weight.detach().double(), net[0].bias.detach().double()
        gamma = 5 * u / (1 - 5 * u)
        e = gamma * torch.maximum(low.abs(), high.abs()) @ w.abs().T + gamma * b.abs() + 5 * eta
        mid, rad = (low + high) / 2 @ w.T + b, (high - low) / 2 @ w.abs().T
        out = torch.maximum(F.leaky_relu(mid - rad, 3.0).abs(), F.leaky_relu(mid + rad, 3.0).abs())
        expected = 3 * e + 4 * u * (out + 3 * e) + 4 * tiny
    else:
        conv = nn.Conv1d(2, 3, 3)
        pool = {"conv_avgpool": nn.AvgPool1d(2), "conv_adaptive": nn.AdaptiveAvgPool1d(2)}.get(op, nn.Identity())
        net = nn.Sequential(conv, pool)
        net.eval()
        x = torch.rand(2, 2, 7, generator=torch.Generator().manual_seed(3))
        box = input_box(x, 0.05)
        low, high = box.lower.double(), box.upper.double()
        w, b = conv.weight.detach().double(), conv.bias.detach().double()
        gamma = 7 * u / (1 - 7 * u)
        expected = F.conv1d(gamma * torch.maximum(low.abs(), high.abs()), w.abs()) + gamma * b.abs().view(1, 3, 1) + 7 * eta
        if op != "conv":
            mid, rad = F.conv1d((low + high) / 2, w, b), F.conv1d((high - low) / 2, w.abs())
            magnitude = mid.abs() + rad
            n, average = (2, lambda t: F.avg_pool1d(t, 2)) if op == "conv_avgpool" else (4, lambda t: F.adaptive_avg_pool1d(t, 2))
            gamma_n = (n + 1) * u / (1 - (n + 1) * u)
            expected = average(expected) + gamma_n * average(magnitude + expected) + (n + 1) * eta
    bound = output_rounding(trace(net, x), box).double()
    torch.testing.assert_close(bound, expected, rtol=1e-5, atol=0)
