"""CROWN: sound on random ReLU networks of every supported layer (chains and residual graphs, robench's
own WideResNet included), equal to dense per-neuron references, tighter than IBP on average, exact at
eps = 0, never contradicted by PGD."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench._errors import ConfigError
from robench.certify import crown, ibp
from robench.certify.ibp import Box, input_box
from robench.models.archs import WideResNet
from robench.models.wrapper import Normalize
from tests.certify.nets import BufferOps, ShortcutFirst, _randomize_bn, networks

TOL = 1e-9


class FunctionalTail(nn.Module):
    """``relu`` as functions and methods, ``view(x.size(0), -1)`` flattening, then a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 3 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        x = x.view(x.size(0), -1).relu()
        return self.linear(torch.relu(x))


class ResidualMLP(nn.Module):
    """``z1 = W1 x``, ``z2 = W2 relu(z1) + z1`` (pre-activation skip), ``z3 = W3 relu(z2) - relu(z1)`` (a
    skip over a ReLU, subtracted), logits ``W4 relu(z3)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.out = nn.Linear(16, 10), nn.Linear(10, 10), nn.Linear(10, 10), nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1 = self.fc1(x.flatten(1))
        a1 = torch.relu(z1)
        a2 = torch.relu(self.fc2(a1) + z1)
        return self.out(F.relu(self.fc3(a2) - a1))


class FunctionalResidual(nn.Module):
    """Residual additions written as functions: ``torch.add``, a tensor added to itself, constant
    scaling, a skip across two ReLUs, functional average pooling and a final ``torch.flatten``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.a, self.b = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        g = torch.add(h, 0.5 * self.a(h).relu())
        g = self.bn(g + g - self.b(F.relu(g)) / 3.0) + h
        g = F.avg_pool2d(torch.relu(g), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(g, 2), 1))


class Concatenated(nn.Module):
    """A concatenation of two branches (IBP bounds it, CROWN does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        return self.fc(torch.cat([h, torch.relu(h)], 1))


def _tiny_wrn() -> nn.Module:
    """robench's WideResNet-10-1 (the yardstick's family, pre-activation blocks and 1x1 shortcuts) on 4 px."""
    net = WideResNet(10, 1, num_classes=5)
    net.pool = nn.AdaptiveAvgPool2d(1)
    return net


def _nets() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    nets = {
        "mlp": nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 5)),
        "conv_bn_avgpool": nn.Sequential(
            Normalize([0.5], [0.25]), nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(24, 12), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(12, 5),
        ),
        "functional": nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), FunctionalTail()),
        "buffer_methods": nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), BufferOps(), nn.Linear(27, 5)),
        "linear_bn1d": nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 5)),
        "residual_mlp": ResidualMLP(),
        "residual_functional": FunctionalResidual(),
        "wrn_10_1": _tiny_wrn(),
        "shortcut_first": ShortcutFirst(),
    }  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    for net in nets.values():
        _randomize_bn(net, generator)
        net.eval().double()
    return nets


NETS = _nets()
SHAPES = {"residual_mlp": (1, 4, 4), "wrn_10_1": (3, 4, 4)}


def _box(n: int, eps: float, seed: int = 0, name: str = "") -> tuple[torch.Tensor, Box]:
    x = torch.rand((n, *SHAPES.get(name, (1, 8, 8))), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    box = input_box(x, eps)
    return x, box


@pytest.mark.parametrize("name", sorted(NETS))
def test_bounds_contain_sampled_and_attacked_outputs(name: str) -> None:
    net = NETS[name]
    x, box = _box(4, 0.08, name=name)
    bounds = crown.crown_bounds(net, box)
    labels = torch.arange(4) % 5
    margins = crown.margin_lower_bounds(net, box, labels)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for corners in (False, True):
            u = torch.rand((1000, *x.shape), generator=generator, dtype=torch.float64)
            points = box.lower + (u.round() if corners else u) * (box.upper - box.lower)
            out = net(points.flatten(0, 1)).view(1000, 4, -1)
            assert (out >= bounds.lower - TOL).all() and (out <= bounds.upper + TOL).all()
            true = out.gather(2, labels[None, :, None].expand(1000, -1, 1))
            assert ((true - out).amin(0).scatter(1, labels[:, None], float("inf")) >= margins - TOL).all()
    for sign in (1.0, -1.0):  # sign-gradient ascent/descent on every logit stays inside
        z = x.clone().requires_grad_(True)
        for _ in range(30):
            (grad,) = torch.autograd.grad(sign * net(z).sum(), z)
            z = torch.max(torch.min(z.detach() + 0.02 * grad.sign(), box.upper), box.lower).requires_grad_(True)
        out = net(z).detach()
        assert (out >= bounds.lower - TOL).all() and (out <= bounds.upper + TOL).all()
    # the bounds are informative: not wildly looser than the sampled range
    assert bool((bounds.upper - bounds.lower).max() < 1e3)


@pytest.mark.parametrize("name", sorted(NETS))
def test_tighter_than_ibp_on_average(name: str) -> None:
    # CROWN is not guaranteed tighter than IBP neuron by neuron (the adaptive lower slope can lose),
    # but on average it should be, and its margins should be at least IBP's on average.
    net = NETS[name]
    _, box = _box(8, 0.05, seed=3, name=name)
    ours, interval = crown.crown_bounds(net, box), ibp.interval_bounds(net, box)
    assert float((interval.upper - interval.lower - (ours.upper - ours.lower)).mean()) > 0
    labels = torch.arange(8) % 5
    gap = crown.margin_lower_bounds(net, box, labels) - ibp.margin_lower_bounds(net, box, labels)
    assert float(gap[gap.isfinite()].mean()) >= 0


def _relax(lam: torch.Tensor, const: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Rows ``lam`` on a ReLU's output moved to its input, neuron by neuron (in place); adds to ``const``."""
    for i in range(lam.shape[1]):
        l, u = lower[i], upper[i]
        if l >= 0:
            continue
        if u <= 0:
            lam[:, i] = 0
            continue
        slope, alpha = u / (u - l), 1.0 if u > -l else 0.0
        for r in range(lam.shape[0]):
            if lam[r, i] < 0:
                const[r] += lam[r, i] * (-slope * l)
                lam[r, i] = lam[r, i] * slope
            else:
                lam[r, i] = lam[r, i] * alpha
    return lam


def _concretise(lam: torch.Tensor, const: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    return const + lam @ centre - lam.abs() @ radius


def _dense_crown(weights: list[torch.Tensor], biases: list[torch.Tensor], lower: torch.Tensor, upper: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
    """Zhang et al. (2018) written out with explicit matrices and a loop over neurons, one example."""
    pre: list[tuple[torch.Tensor, torch.Tensor]] = []

    def lower_bound(layer: int, rows: torch.Tensor) -> torch.Tensor:  # lower bound of rows @ z_layer
        lam, const = rows.clone(), torch.zeros(rows.shape[0], dtype=torch.float64)
        for j in range(layer, -1, -1):
            const += lam @ biases[j]
            lam = lam @ weights[j]
            if j > 0:
                lam = _relax(lam, const, *pre[j - 1])
        return _concretise(lam, const, lower, upper)

    for layer in range(len(weights) - 1):
        eye = torch.eye(weights[layer].shape[0], dtype=torch.float64)
        pre.append((lower_bound(layer, eye), -lower_bound(layer, -eye)))
    return lower_bound(len(weights) - 1, spec)


def _dense_residual_mlp(
    net: ResidualMLP, lower: torch.Tensor, upper: torch.Tensor, spec: torch.Tensor
) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """CROWN on :class:`ResidualMLP` by hand, one example: the coefficients reaching ``relu(z1)`` from
    ``W2`` and from the subtracted skip are summed before that ReLU is relaxed (as auto_LiRPA does).
    Returns the margins' lower bounds and the pre-activation bounds."""
    (w1, b1), (w2, b2), (w3, b3), (w4, b4) = [(m.weight.detach(), m.bias.detach()) for m in (net.fc1, net.fc2, net.fc3, net.out)]
    bounds: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def from_z1(lam: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
        return _concretise(lam @ w1, const + lam @ b1, lower, upper)

    def from_z2(lam: torch.Tensor, const: torch.Tensor, on_a1: torch.Tensor) -> torch.Tensor:
        on_a1 = on_a1 + lam @ w2  # z2 = W2 a1 + b2 + z1
        on_z1 = lam.clone()
        const = const + lam @ b2
        return from_z1(on_z1 + _relax(on_a1, const, *bounds["z1"]), const)

    def from_z3(lam: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
        on_a2, on_a1 = lam @ w3, -lam  # z3 = W3 a2 + b3 - a1
        const = const + lam @ b3
        on_z2 = _relax(on_a2, const, *bounds["z2"])
        return from_z2(on_z2, const, on_a1)

    def both(bound: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        eye, zero = torch.eye(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        return bound(eye, zero.clone()), -bound(-eye, zero.clone())

    bounds["z1"] = both(from_z1, 10)
    bounds["z2"] = both(lambda lam, const: from_z2(lam, const, torch.zeros_like(lam)), 10)
    bounds["z3"] = both(from_z3, 10)
    lam, const = spec @ w4, spec @ b4
    return from_z3(_relax(lam, const, *bounds["z3"]), const), bounds


def test_equal_to_dense_per_neuron_reference() -> None:
    net = NETS["mlp"]
    linears = [m for m in net if isinstance(m, nn.Linear)]
    _, box = _box(3, 0.1, seed=5)
    labels = torch.tensor([0, 3, 4])
    ours = crown.margin_lower_bounds(net, box, labels)
    for b in range(3):
        spec = crown.specification(labels[b : b + 1], 5, torch.float64)[0]
        reference = _dense_crown(
            [m.weight.detach() for m in linears], [m.bias.detach() for m in linears], box.lower[b].flatten(), box.upper[b].flatten(), spec
        )
        reference[labels[b]] = float("inf")
        torch.testing.assert_close(ours[b], reference, rtol=1e-10, atol=1e-10)


def test_equal_to_dense_reference_on_a_residual_graph() -> None:
    net = NETS["residual_mlp"]
    _, box = _box(3, 0.15, seed=8, name="residual_mlp")
    labels = torch.tensor([1, 2, 4])
    ours = crown.margin_lower_bounds(net, box, labels)
    for b in range(3):
        spec = crown.specification(labels[b : b + 1], 5, torch.float64)[0]
        reference, pre = _dense_residual_mlp(net, box.lower[b].flatten(), box.upper[b].flatten(), spec)
        reference[labels[b]] = float("inf")
        torch.testing.assert_close(ours[b], reference, rtol=1e-10, atol=1e-10)
        for lower, upper in pre.values():  # every ReLU has unstable neurons: the relaxations are exercised
            assert bool(((lower < 0) & (upper > 0)).any())


@pytest.mark.parametrize("name", ["conv_bn_avgpool", "residual_functional"])
def test_chunking_does_not_change_the_bounds(name: str) -> None:
    net = NETS[name]
    _, box = _box(5, 0.05, seed=6, name=name)
    labels = torch.arange(5)
    full = crown.margin_lower_bounds(net, box, labels)
    chunked = crown.margin_lower_bounds(net, box, labels, max_elements=1000)
    torch.testing.assert_close(full, chunked, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(NETS))
def test_exact_at_zero_radius(name: str) -> None:
    net = NETS[name]
    x, _ = _box(6, 0.0, seed=7, name=name)
    labels = torch.arange(6) % 5
    margins = crown.margin_lower_bounds(net, Box(x, x), labels)
    with torch.no_grad():
        logits = net(x)
    reference = (logits.gather(1, labels[:, None]) - logits).scatter(1, labels[:, None], float("inf"))
    torch.testing.assert_close(margins, reference, rtol=1e-9, atol=1e-9)
    bounds = crown.crown_bounds(net, Box(x, x))
    torch.testing.assert_close(bounds.lower, logits, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(bounds.upper, logits, rtol=1e-9, atol=1e-9)


def test_mnist_mlp_verifies_at_least_as_many_as_ibp_and_pgd_agrees(digit_mlp, digits) -> None:
    from robench.attacks.pgd import PGD

    x, y = digits.load(slice(0, 100))
    correct = digit_mlp(x).argmax(1) == y
    for eps in (0.01, 0.02):
        ours = crown.verified(digit_mlp, x, y, eps) & correct
        interval = ibp.verified(digit_mlp, x, y, eps) & correct
        assert int(ours.sum()) >= int(interval.sum())
        assert not bool((interval & ~ours).any())  # one hidden layer: CROWN dominates IBP here
    flags = crown.verified(digit_mlp, x, y, 0.02) & correct
    assert int(flags.sum()) > int((ibp.verified(digit_mlp, x, y, 0.02) & correct).sum())
    assert 10 <= int(flags.sum()) < 100
    result = PGD(steps=40, loss="margin")(digit_mlp, x[flags], y[flags], norm="Linf", eps=0.02)
    assert not bool(result.success.any())


def test_unsupported_layers_are_named() -> None:
    box = Box(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=r"CROWN: unsupported layer '2' \(GELU\)"):
        crown.crown_bounds(net, box)
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ConfigError, match=r"layer '2' \(MaxPool2d\)"):
        crown.crown_bounds(net, box)
    residual = networks()["conv_maxpool_residual"]  # the residual addition is supported, max pooling is not
    with pytest.raises(ConfigError, match=r"layer '3' \(MaxPool2d\)"):
        crown.crown_bounds(residual, Box(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)))
    with pytest.raises(ConfigError, match=r"function 'cat'"):
        crown.crown_bounds(Concatenated(), box)


    class Sorted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sort(x.flatten(1), dim=1).values  # a node with several outputs (an AttributeError before)

    with pytest.raises(ConfigError, match=r"unsupported function 'sort'"):
        crown.crown_bounds(Sorted(), box)


def test_crown_section_end_to_end(digit_mlp, digits) -> None:
    from robench.report.render import render_html
    from robench.report.sections.certification import build
    from tests.certify._results import certification_results
    from tests.certify.test_section import _records, _run, _threat

    threat = _threat([{"name": "ibp", "params": {"pgd_check_steps": 0}}, {"name": "crown", "params": {"pgd_check_steps": 10}}], {"norm": "Linf", "eps": 0.02})
    ibp_out, _ = _run(digit_mlp, digits, threat, 0)
    out, _ = _run(digit_mlp, digits, threat, 1)
    assert out.checks[0].name == "crown_pgd_consistency" and out.checks[0].status == "pass"
    assert out.artifacts["certifier"] == "crown" and out.resolved["max_elements"] == crown.DEFAULT_MAX_ELEMENTS
    curve = [r for r in _records(out, "certified_accuracy") if "eps" in r.condition]
    assert [r.condition["eps"] for r in curve] == pytest.approx([0.0, 0.005, 0.01, 0.015, 0.02])
    values = [r.value for r in curve]
    assert values == sorted(values, reverse=True) and all(r.n == 200 for r in curve)
    # the curve starts at the point itself: every correct example with a margin beyond rounding (all of these)
    clean = next(r for r in _records(out, "clean_accuracy"))
    assert curve[0].value == clean.value
    headline = next(r for r in _records(out, "certified_accuracy") if "threat_eps" in r.condition)
    x, y = digits.load(slice(0, 200))
    expected = crown.verified(digit_mlp, x, y, 0.02) & (digit_mlp(x).argmax(1) == y)
    assert headline.value == pytest.approx(float(expected.double().mean()))
    ibp_headline = next(r for r in _records(ibp_out, "certified_accuracy") if "threat_eps" in r.condition)
    assert headline.value > ibp_headline.value
    results = certification_results(threat, {"ibp": ibp_out, "crown": out})
    section = build(results)
    assert section is not None and section["figure_eps"].startswith("data:image/png")
    assert [r["grid_key"] for r in section["rows"]] == ["eps", "eps"]
    html = render_html(results)
    assert "CROWN linear relaxation bounds" in html and "Interval bound propagation" in html


def test_crown_section_l2_warns(digit_mlp, digits) -> None:
    from robench.data.base import ArrayDataset
    from tests.certify.test_section import _run, _threat

    x, y = digits.load(slice(0, 20))
    threat = _threat([{"name": "crown", "params": {"pgd_check_steps": 0, "eps_fractions": [1.0]}}], {"norm": "L2", "eps": 0.1})
    out, _ = _run(digit_mlp, ArrayDataset(x, y, 10), threat)
    assert any("enclosing Linf box" in w for w in out.warnings)


def test_a_tensor_built_from_the_input_shape_is_refused_by_name() -> None:
    # torch.zeros((x.shape[0], 5)) + net(x): the traced constant had the tracing batch's 2 rows and the
    # bound crashed with "size of tensor a (10) must match ... (2)"
    class ZerosAccumulator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros((x.shape[0], 5), dtype=x.dtype) + self.net(x)

    _, box = _box(10, 0.01)
    with pytest.raises(ConfigError, match="built from the input's shape"):
        crown.crown_bounds(ZerosAccumulator().double().eval(), box)


def test_float64_bounds_bound_the_same_function(digit_mlp, digits) -> None:
    """CROWN computes its bounds in float64 by default, on the float32 model's own operands, so its
    own rounding (its backward products sum over fan-outs, which the forward allowance does not
    follow) is ~2^-29 of the model's; the bounds agree with the float32 ones to float32 rounding,
    still contain the float32 model's margins, and leave the model in float32."""
    from robench.certify._trace import trace

    x, y = digits.load(slice(0, 64))
    graph = trace(digit_mlp, x)
    box = input_box(x, 0.02)
    narrow = crown.margin_lower_bounds(graph, box, y)
    precise = crown.margin_lower_bounds(graph, box, y, dtype=torch.float64)
    assert narrow.dtype == torch.float32 and precise.dtype == torch.float64
    assert all(p.dtype == torch.float32 for p in (*digit_mlp.parameters(), *graph.parameters()))
    finite = torch.isfinite(narrow)
    torch.testing.assert_close(precise[finite], narrow[finite].double(), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        points = box.lower + torch.rand((200, *x.shape), generator=torch.Generator().manual_seed(0)) * (box.upper - box.lower)
        out = digit_mlp(points.flatten(0, 1)).view(200, *y.shape, -1)
    sampled = (out.gather(2, y[None, :, None].expand(200, -1, 1)) - out).amin(0).scatter(1, y[:, None], float("inf"))
    assert bool((sampled.double() >= precise).all())
    flags, without = crown.verdicts(graph, x, y, 0.02)
    flags32, without32 = crown.verdicts(graph, x, y, 0.02, dtype=None)
    assert 0 < int(flags.sum()) < 64 and int((flags != flags32).sum()) <= 1 and int((without != without32).sum()) <= 1


class _DerivedConstant(nn.Module):
    """A constant the forward derives from parameters: 1.0 in float32 ((0.99 + 2^20) - 2^20 rounds),
    0.99 in float64; the float32 model's second logit is 1.8 h, and at h = 0.6 it wins."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(0.99))
        self.t = nn.Parameter(torch.tensor(2.0**20))
        self.out = nn.Linear(1, 2)
        with torch.no_grad():
            self.out.weight.copy_(torch.tensor([[0.0], [180.0]]))
            self.out.bias.copy_(torch.tensor([1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        c = (self.s + self.t) - self.t
        return self.out(h * c - h * self.s)


def test_float64_bounds_use_the_constants_the_float32_model_computes() -> None:
    """A float64 copy of the traced model recomputed ``(s + t) - t`` in float64 (0.99 where the float32
    model has 1.0): the copy's second logit was 0 everywhere, and CROWN verified x = 0.5 at eps 0.1,
    where the float32 model gives class 1 at 0.6 (review of 2026-12-04). The operands are now
    computed as the model computes them, then widened."""
    from robench.certify._trace import trace

    net = _DerivedConstant().eval()
    x, y = torch.full((1, 1, 1, 1), 0.5), torch.zeros(1, dtype=torch.long)
    assert int(net(x + 0.1).argmax(1)) == 1  # a counterexample inside the box
    graph = trace(net, x)
    for dtype in (torch.float64, None):
        assert not bool(crown.verified(graph, x, y, 0.1, dtype=dtype).any())
        margin = crown.margin_lower_bounds(graph, input_box(x, 0.1), y, dtype=dtype)[0, 1]
        assert float(margin) == pytest.approx(1.0 - 1.8 * 0.6, abs=1e-4)  # exact for this linear net


def test_crown_section_records_its_precision(digit_mlp, digits) -> None:
    from tests.certify.test_section import _run, _threat

    for precision in ("float64", "model"):
        threat = _threat([{"name": "crown", "params": {"pgd_check_steps": 0, "precision": precision}}], {"norm": "Linf", "eps": 0.02})
        out, _ = _run(digit_mlp, digits, threat, 0)
        assert out.resolved["precision"] == precision
        assert out.resolved["arithmetic"] == ("float64 bounds on the model's own operands, TF32 off" if precision == "float64" else "float32, TF32 off")
    wrong = _threat([{"name": "crown", "params": {"precision": "float16"}}], {"norm": "Linf", "eps": 0.02})
    with pytest.raises(ConfigError, match="precision"):
        wrong.resolved_params("certification", wrong.evaluations.certification[0])


def _cancelling_batchnorm() -> nn.Module:
    """running_var = -eps + 1e-12: float32 adds its own 1e-5 and gets 9.1e-13, float64 1.16e-12
    (scales 1048576 vs 927631); the float32 model's first logit 524288 beats the second, 475000."""
    eps32 = float(torch.tensor(1e-5, dtype=torch.float32))
    bn = nn.BatchNorm1d(1).eval()
    lin = nn.Linear(1, 2)
    with torch.no_grad():
        bn.running_var.fill_(-eps32 + 1e-12)
        bn.running_mean.zero_()
        lin.weight.copy_(torch.tensor([[1.0], [0.0]]))
        lin.bias.copy_(torch.tensor([0.0, 475000.0]))
    return nn.Sequential(bn, lin).eval()


class _WideZeroDimConstant(nn.Module):
    """A 0-dim float64 buffer times a float32 tensor is a float32 product (no type promotion for 0-dim
    operands): 1e-46 is 0 there, and the float32 model's logits are [0, 1] everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("c", torch.tensor(1e-46, dtype=torch.float64))
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [0.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((((x * 1e30) * self.c) * 1e30) * 1e30)


class _HalfScalar(nn.Module):
    """float16 ops compute in float32 inside: ``h * 1e-8`` multiplies by float32's 1e-8, which float16
    rounds to 0; the model's logits are [18, 10]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [0.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 10.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(((x * 6e4) * 1e-8) * 6e4)


@pytest.mark.parametrize("case", ["batchnorm", "zero_dim_float64", "float16_scalar"])
def test_no_verification_where_the_model_computes_another_operand(case: str) -> None:
    """Three operands the float64 bounds took at another value than the float32 (float16) model's
    op uses, each verifying an example the model misclassifies at every point of its box (review of
    2026-12-04; the BatchNorm one fooled the float32 path too, through autograd's BatchNorm slope)."""
    if case == "batchnorm":
        net, x, y = _cancelling_batchnorm(), torch.full((1, 1), 0.5), torch.tensor([1])
    elif case == "zero_dim_float64":
        net, x, y = _WideZeroDimConstant().eval(), torch.full((1, 1), 0.5), torch.tensor([0])
    else:
        net, x, y = _HalfScalar().half().eval(), torch.full((1, 1), 0.5, dtype=torch.float16), torch.tensor([1])
    points = torch.linspace(0.49, 0.51, 101, dtype=x.dtype).view(-1, 1)
    with torch.no_grad():
        assert not bool((net(points).argmax(1) == y).any())  # misclassified all over the box
    for dtype in (torch.float64, None):
        for eps in (0.0, 0.01):
            verified, without = crown.verdicts(net, x, y, eps, dtype=dtype)
            assert not bool(verified.any()) and not bool(without.any())


def test_the_adaptive_lower_slope_is_zero_at_a_tie() -> None:
    """``alpha = 1 if u > -l else 0`` (auto_LiRPA's rule, the docstring's): at ``u = -l`` the slope is 0.
    One ReLU with pre-activation box [-0.5, 0.5] and a positive coefficient 3 on it: alpha = 0 gives the
    margin bound b_0 - b_1 = 0.25 by hand; alpha = 1 would give 0.25 - 3 * 0.5."""
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 2)).double().eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[2.0], [-1.0]], dtype=torch.float64))
        net[2].bias.copy_(torch.tensor([0.5, 0.25], dtype=torch.float64))
    box = Box(torch.full((1, 1), -0.5, dtype=torch.float64), torch.full((1, 1), 0.5, dtype=torch.float64))
    margins = crown.margin_lower_bounds(net, box, torch.tensor([0]))
    assert float(margins[0, 1]) == 0.25
