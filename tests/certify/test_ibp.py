"""IBP: sound on random networks of every supported layer, equal to a naive per-neuron reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench._errors import ConfigError
from robench.certify import ibp
from robench.certify.ibp import Box, input_box, interval_bounds, margin_lower_bounds, verified
from tests.certify.nets import input_shape, networks

NETS = networks()
TOL = 1e-5


@pytest.mark.parametrize("name", sorted(NETS))
def test_bounds_contain_sampled_and_attacked_outputs(name: str) -> None:
    net = NETS[name]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((4, *input_shape(name)), generator=generator)
    eps = 0.05
    box = input_box(x, eps)
    bounds = interval_bounds(net, box)
    # 2000 random points per example: uniform inside the box and box corners
    for corners in (False, True):
        u = torch.rand((500, *x.shape), generator=generator)
        u = u.round() if corners else u
        points = box.lower + u * (box.upper - box.lower)
        with torch.no_grad():
            out = net(points.flatten(0, 1)).view(500, x.shape[0], -1)
        assert (out >= bounds.lower - TOL).all() and (out <= bounds.upper + TOL).all()
    # gradient ascent/descent on every logit stays inside too
    for sign in (1.0, -1.0):
        z = x.clone().requires_grad_(True)
        for _ in range(30):
            (grad,) = torch.autograd.grad(sign * net(z).sum(), z)
            z = torch.max(torch.min(z.detach() + 0.01 * grad.sign(), box.upper), box.lower).requires_grad_(True)
        with torch.no_grad():
            out = net(z)
        assert (out >= bounds.lower - TOL).all() and (out <= bounds.upper + TOL).all()
    # margins bounds are below the margins of every sampled point
    labels = torch.arange(x.shape[0]) % 5
    margins = margin_lower_bounds(net, box, labels)
    points = box.lower + torch.rand((300, *x.shape), generator=generator) * (box.upper - box.lower)
    with torch.no_grad():
        out = net(points.flatten(0, 1)).view(300, x.shape[0], -1)
    true = out.gather(2, labels[None, :, None].expand(300, -1, 1))
    sampled = (true - out).amin(dim=0).scatter(1, labels[:, None], float("inf"))
    assert (margins <= sampled + TOL).all()


def _naive_affine(lower: torch.Tensor, upper: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-neuron bounds: sum of w * (u if w > 0 else l), neuron by neuron."""
    new_lower, new_upper = torch.empty(matrix.shape[0], dtype=torch.float64), torch.empty(matrix.shape[0], dtype=torch.float64)
    for neuron in range(matrix.shape[0]):
        row = matrix[neuron]
        positive, negative = row.clamp(min=0), row.clamp(max=0)
        new_lower[neuron] = positive @ lower + negative @ upper + bias[neuron]
        new_upper[neuron] = positive @ upper + negative @ lower + bias[neuron]
    return new_lower, new_upper


def _naive_bounds(net: nn.Sequential, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer by layer on one example: affine layers unrolled to matrices (Jacobian), monotone ones applied."""
    shape = lower.shape
    lower, upper = lower.double().flatten(), upper.double().flatten()
    for layer in net.double():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.BatchNorm2d)):
            zero = torch.zeros(shape, dtype=torch.float64)
            bias = layer(zero.unsqueeze(0)).flatten().detach()
            matrix = torch.autograd.functional.jacobian(lambda v: layer(v.view(1, *shape)).flatten(), zero.flatten())  # noqa: B023
            lower, upper = _naive_affine(lower, upper, matrix, bias)
            shape = layer(zero.unsqueeze(0)).shape[1:]
        else:
            lower = layer(lower.view(1, *shape)).flatten()
            upper = layer(upper.view(1, *shape)).flatten()
            shape = layer(torch.zeros((1, *shape), dtype=torch.float64)).shape[1:]
    net.float()
    return lower, upper


def test_equal_to_naive_per_neuron_reference() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(),
        nn.AvgPool2d(1), nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3),
    ).eval()  # fmt: skip
    net[1].running_var.uniform_(0.5, 2.0)
    net[1].running_mean.normal_()
    x = torch.rand(1, 2, 6, 6)
    box = input_box(x, 0.1)
    ours = interval_bounds(net.double(), Box(box.lower.double(), box.upper.double()))
    net.float()
    lower, upper = _naive_bounds(net, box.lower[0], box.upper[0])
    torch.testing.assert_close(ours.lower[0], lower, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.upper[0], upper, rtol=1e-9, atol=1e-9)


def test_folding_is_tighter_and_agrees_at_zero_radius() -> None:
    net = NETS["mlp"]
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(8) % 5
    folded = margin_lower_bounds(net, input_box(x, 0.02), labels, fold=True)
    loose = margin_lower_bounds(net, input_box(x, 0.02), labels, fold=False)
    assert (folded >= loose - 1e-6).all() and (folded > loose + 1e-6).any()
    exact = margin_lower_bounds(net, Box(x, x), labels)
    with torch.no_grad():
        logits = net(x)
    reference = (logits.gather(1, labels[:, None]) - logits).scatter(1, labels[:, None], float("inf"))
    torch.testing.assert_close(exact, reference, rtol=1e-5, atol=1e-5)


def test_verified_examples_are_not_broken_by_pgd(digit_mlp, digits) -> None:
    from robench.attacks.pgd import PGD

    x, y = digits.load(slice(0, 100))
    eps = 0.02
    flags = verified(digit_mlp, x, y, eps)
    assert 10 <= int(flags.sum()) < 100  # the test is informative: some verified, some not
    result = PGD(steps=40, loss="margin")(digit_mlp, x[flags], y[flags], norm="Linf", eps=eps)
    assert not bool(result.success.any())


def test_unsupported_layer_is_named() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=r"layer '2' \(GELU\)"):
        interval_bounds(net, Box(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)))


def test_untraceable_model_is_a_config_error() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) if x.sum() > 0 else -x.flatten(1)

    with pytest.raises(ConfigError, match="cannot trace"):
        interval_bounds(Branchy(), Box(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)))


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(NETS))
def test_cuda_bounds_equal_cpu_bounds_and_contain_float64_outputs(name: str) -> None:
    import copy

    from robench._numerics import ieee_fp32

    net = NETS[name]
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((4, *input_shape(name)), generator=generator)
    cpu = interval_bounds(net, input_box(x, 0.05))
    with ieee_fp32():  # as the certifiers run: no TF32
        gpu = interval_bounds(copy.deepcopy(net).cuda(), input_box(x.cuda(), 0.05))
    torch.testing.assert_close(gpu.lower.cpu(), cpu.lower, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu.upper.cpu(), cpu.upper, rtol=1e-4, atol=1e-4)
    box = input_box(x, 0.05)
    points = box.lower + torch.rand((300, *x.shape), generator=generator) * (box.upper - box.lower)
    with torch.no_grad():
        out = copy.deepcopy(net).double()(points.flatten(0, 1).double()).view(300, x.shape[0], -1)
    assert (out >= gpu.lower.cpu().double() - TOL).all() and (out <= gpu.upper.cpu().double() + TOL).all()


def test_normalize_refuses_a_nonpositive_std_and_ibp_stays_sound_if_one_is_set() -> None:
    """A negative std flips a channel: the box came out inverted (lower > upper) and IBP verified
    x = 0.45 although x' = 0.55, 0.1 away, is classified otherwise."""
    from robench.certify.lipschitz import lipschitz_bound
    from robench.models.wrapper import Normalize

    with pytest.raises(ValueError, match="positive"):
        Normalize([0.5], [-0.5])
    norm = Normalize([0.5], [0.5])
    norm.std.fill_(-0.5)  # set behind the constructor's back
    net = nn.Sequential(norm, nn.Flatten(), nn.Linear(1, 2)).eval()
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[2].bias.zero_()
    x, y = torch.full((1, 1, 1, 1), 0.45), torch.tensor([0])
    assert int(net(torch.full((1, 1, 1, 1), 0.55)).argmax()) == 1  # the counterexample
    assert not bool(verified(net, x, y, 0.1)[0])
    box = interval_bounds(net, input_box(x, 0.1))
    assert bool((box.lower <= box.upper).all())
    # |d logits / dx| = 2 per output, ||J||_2 = 2 sqrt(2): a sound bound is at least that (was -1 / negative)
    assert lipschitz_bound(net, x)[0] >= 2 * 2**0.5 - 1e-6


def test_layers_with_their_own_forward_and_lossy_casts_are_refused() -> None:
    """QAT layers multiply by fake-quantised weights, not the .weight the rules read (IBP verified
    points with counterexamples); a cast to uint8 or float16 is a step function (a Lipschitz radius
    of 1.2e-3 was broken by a 1.2e-4 perturbation); every propagator refuses them by name."""
    import torch.ao.nn.qat as qat
    from torch.ao.quantization import get_default_qat_qconfig

    from robench.certify import crown, lipschitz

    fake = qat.Linear(64, 5, qconfig=get_default_qat_qconfig("fbgemm"))
    quantised = nn.Sequential(nn.Flatten(), fake).eval()

    class Cast(nn.Module):
        def __init__(self, dtype: torch.dtype) -> None:
            super().__init__()
            self.dtype, self.fc = dtype, nn.Linear(64, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc((x * 255).to(self.dtype).float().flatten(1) / 255)

    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    box = input_box(x, 0.01)
    for run in (lambda m: ibp.interval_bounds(m, box), lambda m: lipschitz.lipschitz_bound(m, x[:1]), lambda m: crown.crown_bounds(m, box)):
        with pytest.raises(ConfigError, match="torch.ao.nn.qat.*with its own forward"):
            run(quantised)
    for dtype in (torch.uint8, torch.float16):
        for run in (lambda m: ibp.interval_bounds(m, box), lambda m: lipschitz.lipschitz_bound(m, x[:1])):
            with pytest.raises(ConfigError, match="method 'to'"):
                run(Cast(dtype).eval())
    lipschitz.lipschitz_bound(Cast(torch.float32).eval(), x[:1])  # the same float type (or a wider one) is exact: allowed
    ibp.interval_bounds(Cast(torch.float32).eval(), box)


def test_a_bounded_value_passed_by_keyword_is_refused_by_name() -> None:
    # torch.flatten(input=h, start_dim=1): the rules looked at positional arguments only -> TypeError
    from robench.certify import lipschitz

    class Keyword(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(input=x, start_dim=1))

    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="function 'flatten'"):
        ibp.interval_bounds(Keyword().eval(), input_box(x, 0.01))
    with pytest.raises(ConfigError, match="function 'flatten'"):
        lipschitz.lipschitz_bound(Keyword().eval(), x[:1])


def test_no_certificate_within_float32_rounding_of_the_boundary() -> None:
    """Linear 2-class models with the bias set so that the float32 model's margin at the worst corner
    of the box is just negative: with a bare ``> 0`` IBP and CROWN verified some of them (548 and 680
    of 15,922 in a larger search); a margin must clear the rounding tolerance."""
    from robench.certify import crown

    g = torch.Generator().manual_seed(0)
    naive = {"ibp": 0, "crown": 0}
    for _ in range(40):
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval()
        with torch.no_grad():
            net[1].weight.copy_(torch.randn(2, 64, generator=g))
            net[1].bias.zero_()
        x, eps, y = torch.rand(1, 1, 8, 8, generator=g), 0.05, torch.tensor([0])
        w = (net[1].weight[0] - net[1].weight[1]).detach().double().view(1, 1, 8, 8)
        corner = torch.where(w > 0, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
        exact = float((w * corner.double()).sum())
        for k in range(-10, 11):
            with torch.no_grad():
                net[1].bias[0] = -exact + k * 2e-7
                out = net(corner)
            if float(out[0, 0] - out[0, 1]) >= 0:
                continue  # only models with a float32 counterexample at the corner
            for name, module in (("ibp", ibp), ("crown", crown)):
                assert not bool(module.verified(net, x, y, eps)), name
                nearest = Box((x - eps).clamp(0, 1), (x + eps).clamp(0, 1))  # the box before its ends were rounded outward
                naive[name] += int(bool((module.margin_lower_bounds(net, nearest, y) > 0).all()))
    assert naive["ibp"] + naive["crown"] > 0  # the bare rule on that box would have certified some of them


def test_the_rounding_tolerance_follows_the_dtype_and_ignores_a_shared_offset() -> None:
    # 1e-5 x (1 + max |logit|) rejected an exact margin of 0.05 on logits near 1e4, and any float64 margin below ~1e-5
    from robench.certify.ibp import rounding_tolerance

    class Offset(nn.Module):
        def __init__(self, dtype: torch.dtype) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 2).to(dtype)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 1e-3 * self.fc(x.flatten(1)) + torch.tensor([1e4, 1e4 - 0.05], dtype=x.dtype)

    x = torch.rand(1, 1, 8, 8)
    assert float(rounding_tolerance(Offset(torch.float32).eval(), x)) < 2e-5
    assert float(rounding_tolerance(Offset(torch.float64).eval(), x.double())) < 1e-12
    assert bool(verified(Offset(torch.float32).eval(), x, torch.tensor([0]), 0.01))


def test_a_model_failing_in_the_trace_check_is_a_model_error() -> None:
    """The trace check runs the model outside any batch: its exception was an internal error (exit 1)."""
    from robench._errors import ModelError
    from robench.certify._trace import trace

    class FailsOnRun(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not isinstance(x, torch.fx.Proxy):  # traced fine, fails when run
                raise RuntimeError("boom: deliberate failure\nsecond line")
            return self.fc(x.flatten(1))

    with pytest.raises(ModelError, match="boom: deliberate failure$"):
        trace(FailsOnRun(), example=torch.rand(2, 1, 2, 2))


def test_functional_dropout_in_training_mode_is_refused() -> None:
    """``F.dropout(h, p)`` defaults to training=True, so the model stays random after eval(): IBP drew
    one mask per bound and "verified" a model that misclassifies x itself on half its passes (fourth
    review). Only ``training=False`` (or p = 0) is accepted."""
    import torch.nn.functional as F

    from robench._errors import ConfigError

    class Net(nn.Module):
        def __init__(self, training: bool | None) -> None:
            super().__init__()
            self.fc, self.training_arg = nn.Linear(1, 2), training
            with torch.no_grad():
                self.fc.weight.copy_(torch.tensor([[10.0], [0.0]]))
                self.fc.bias.copy_(torch.tensor([-1.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training_arg is None:
                return self.fc(F.dropout(x, 0.5))
            return self.fc(F.dropout(x, 0.5, training=self.training_arg))

    x, y = torch.tensor([[0.5]]), torch.tensor([0])
    for seed in range(20):
        torch.manual_seed(seed)
        with pytest.raises(ConfigError):
            verified(Net(None).eval(), x, y, 0.01)
    assert bool(verified(Net(False).eval(), x, y, 0.01))


def test_a_single_linear_layer_is_bounded_exactly_and_its_folded_margins_too() -> None:
    """One affine layer: IBP's box is exactly ``W c +- |W| r`` (numpy, float64), each end attained at
    the vertex ``c +- r sign(W_i)``, and the folded margin bound is the exact minimum of
    ``(W_y - W_j) x + b_y - b_j`` over the box, ``(W_y - W_j) c + b_y - b_j - |W_y - W_j| r``, attained
    at a vertex too: tighter would be unsound, looser is not the method (e.g. a doubled radius term)."""
    import numpy as np

    torch.manual_seed(5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(10, 4)).double().eval()
    x = torch.rand(3, 1, 10, dtype=torch.float64)
    eps = 0.07
    box = Box(x - eps, x + eps)
    w, b = net[1].weight.detach().numpy(), net[1].bias.detach().numpy()
    c, r = x.flatten(1).numpy(), np.full((3, 10), eps)
    bounds = interval_bounds(net, box)
    np.testing.assert_allclose(bounds.lower.numpy(), c @ w.T + b - r @ np.abs(w).T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bounds.upper.numpy(), c @ w.T + b + r @ np.abs(w).T, rtol=1e-12, atol=1e-12)
    for i in range(4):  # attained at the vertices
        top = torch.from_numpy(c + r * np.sign(w[i])).view_as(x)
        with torch.no_grad():
            assert torch.allclose(net(top)[:, i], bounds.upper[:, i], rtol=1e-12, atol=1e-12)
    labels = torch.tensor([0, 2, 3])
    margins = margin_lower_bounds(net, box, labels)
    for k, y in enumerate(labels.tolist()):
        for j in range(4):
            if j == y:
                assert margins[k, j] == float("inf")
                continue
            d = w[y] - w[j]
            exact = d @ c[k] + b[y] - b[j] - np.abs(d) @ r[k]
            assert float(margins[k, j]) == pytest.approx(exact, rel=1e-12, abs=1e-12)
            worst = torch.from_numpy(c[k] - r[k] * np.sign(d)).view(1, 1, 10)
            with torch.no_grad():
                out = net(worst)[0]
            assert float(out[y] - out[j]) == pytest.approx(exact, rel=1e-12, abs=1e-12)


class _Arithmetic(nn.Module):
    """Box - box, -box, box / negative constants, constant - box, box + box, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 3), nn.Linear(6, 3)
        self.register_buffer("c", torch.tensor([-2.0, 0.5, -4.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        a, h = self.fc1(x.flatten(1)), torch.relu(self.fc2(x.flatten(1)))
        return torch.cat([a - h, -a, a / self.c, 1.0 - h, a + h], 1)


def test_arithmetic_on_boxes_equals_hand_interval_arithmetic_and_contains_the_vertices() -> None:
    """Interval arithmetic written out by hand (float64): ``[a] - [h] = [a_l - h_u, a_u - h_l]``,
    ``-[a] = [-a_u, -a_l]``, ``[a] / c`` with the ends swapped where ``c < 0``, ``1 - [h] = [1 - h_u,
    1 - h_l]``, ``[a] + [h] = [a_l + h_l, a_u + h_u]``; and the box holds the model's outputs at every vertex of the input box (2^6) and at
    random points (a box - box rule subtracting like ends, or a division not reordering, is tighter
    than the truth)."""
    import itertools

    torch.manual_seed(6)
    net = _Arithmetic().double().eval()
    x = torch.rand(2, 6, dtype=torch.float64)
    eps = 0.2
    box = Box(x - eps, x + eps)
    out = interval_bounds(net, box)

    def affine(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        w, b = layer.weight.detach(), layer.bias.detach()
        mid, rad = x @ w.T + b, eps * w.abs().sum(1)
        return mid - rad, mid + rad

    al, au = affine(net.fc1)
    hl, hu = (t.clamp_min(0) for t in affine(net.fc2))
    c = net.c
    lower = torch.cat([al - hu, -au, torch.minimum(al / c, au / c), 1.0 - hu, al + hl], 1)
    upper = torch.cat([au - hl, -al, torch.maximum(al / c, au / c), 1.0 - hl, au + hu], 1)
    torch.testing.assert_close(out.lower, lower, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.upper, upper, rtol=1e-12, atol=1e-12)
    vertices = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=6)), dtype=torch.float64)
    points = torch.cat([vertices, torch.rand(1000, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1])
    with torch.no_grad():
        values = net((x[:, None, :] + eps * points[None]).flatten(0, 1)).view(2, len(points), -1)
    assert bool((values >= out.lower[:, None] - 1e-12).all()) and bool((values <= out.upper[:, None] + 1e-12).all())


def test_softplus_step_widening_is_divided_by_beta() -> None:
    """Softplus(beta) drops by log1p(exp(-20)) / beta where it switches to the identity (beta z = 20):
    with beta = 0.5 that is 4.1e-9, and the box over a switch must keep every output (a widening of
    log1p(exp(-20)) * beta, 1e-9, left outputs just above the switch below the lower bound)."""
    import math

    model = nn.Sequential(nn.Linear(1, 1), nn.Softplus(beta=0.5)).double().eval()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(39.5)  # z = x + 39.5 crosses 40 = threshold / beta at x = 0.5
    x, eps = torch.tensor([[0.5]], dtype=torch.float64), 1e-9
    bounds = interval_bounds(model, Box(x - eps, x + eps))
    points = torch.linspace(0.5 - eps, 0.5 + eps, 2001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        out = model(points)
    assert float(out.max() - out.min()) > 2e-9  # the step is visible
    assert bool((bounds.lower <= out).all()) and bool((out <= bounds.upper).all())
    step = math.log1p(math.exp(-20.0)) / 0.5
    with torch.no_grad():
        ends = model(torch.tensor([[0.5 - eps], [0.5 + eps]], dtype=torch.float64))
    assert float(bounds.lower) == pytest.approx(float(ends[0]) - step, rel=0, abs=1e-15)
    assert float(bounds.upper) == pytest.approx(float(ends[1]) + step, rel=0, abs=1e-15)


def test_the_rounding_tolerance_is_a_hundred_ulps_of_one_plus_the_logit_spread() -> None:
    """``100 eps (1 + max - min logit)`` by hand: the spread is what makes the tolerance follow the
    logits' rounding (a tolerance without it, 1.2e-5, is below the float32 rounding of logits near 1e3)."""
    from robench.certify.ibp import rounding_tolerance

    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, -2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
        net[1].bias.copy_(torch.tensor([900.0, -100.0, 0.0]))
    x = torch.tensor([[[0.5, 0.25, 0.0, 1.0]], [[0.0, 1.0, 0.5, 0.5]]])
    spread = torch.tensor([900.5 - (-100.5), 900.0 - (-102.0)], dtype=torch.float64)  # logits by hand
    expected = 100 * 2.0**-23 * (1 + spread)
    torch.testing.assert_close(rounding_tolerance(net, x).double(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(rounding_tolerance(net.double(), x.double()), 100 * 2.0**-52 * (1 + spread), rtol=1e-12, atol=0)
