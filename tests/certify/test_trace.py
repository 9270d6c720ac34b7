"""What the certifiers trace is the model that runs: in-place operations, lazy layers, settings
under which a layer stops being monotone or 1-Lipschitz, broadcasting and attribute access."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from robench._errors import ConfigError
from robench.certify import crown, ibp
from robench.certify._trace import trace
from robench.certify.ibp import Box
from robench.certify.lipschitz import lipschitz_bound


class _AliasedShortcut(nn.Module):
    """``fc1(relu_(h)) + h``: the in-place ReLU overwrites ``h``, the shortcut, when the model runs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc0, self.fc1, self.fc2 = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
        self.relu = nn.ReLU(inplace=True)
        with torch.no_grad():  # the reviewer's counterexample: (0.4, 0.55) is "verified", (0.4, 0.45) is not
            self.fc0.weight.copy_(torch.eye(2))
            self.fc0.bias.copy_(torch.tensor([-0.6, 0.0]))
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
            self.fc1.bias.zero_()
            self.fc2.weight.copy_(torch.tensor([[-1.0, 1.0], [0.0, 0.0]]))
            self.fc2.bias.copy_(torch.tensor([-0.54, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.fc0(x)
        return self.fc2(self.fc1(self.relu(h)) + h)


class _AugmentedAssignment(nn.Module):
    """``y = h; y += branch(x)``: fx records an addition, the model also changes ``h``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.a(x)
        y = h
        y += self.b(x)
        return self.c(h)


class _ResidualBlock(nn.Module):
    """A torchvision-style block: in-place ReLUs and ``out += identity`` on a fresh tensor (harmless)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.conv2(self.relu(self.conv1(x)))
        out += x
        return self.head(self.relu(out))


def test_in_place_shortcut_is_refused_not_verified() -> None:
    model = _AliasedShortcut().eval()
    x, y = torch.tensor([[0.4, 0.55]]), torch.tensor([0])
    assert model(x.clone()).argmax(1).item() == 0 and model(torch.tensor([[0.4, 0.45]])).argmax(1).item() == 1
    for verify in (crown.verified, ibp.verified):
        with pytest.raises(ConfigError, match="does not reproduce the model"):
            verify(model, x, y, 0.1)


def test_augmented_assignment_aliasing_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not reproduce the model"):
        ibp.interval_bounds(_AugmentedAssignment().eval(), Box(torch.zeros(2, 4), torch.ones(2, 4)))


def test_in_place_functions_and_methods_are_refused() -> None:
    class Functional(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return F.relu(x, True)

    class Method(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return x.clone().clamp_(0, 1)

    for model in (Functional(), Method()):
        with pytest.raises(ConfigError, match="in-place"):
            trace(model, torch.rand(2, 3))


def test_harmless_in_place_layers_give_the_out_of_place_bounds() -> None:
    torch.manual_seed(0)
    model = _ResidualBlock().eval()
    box = Box(torch.rand(2, 2, 4, 4) * 0.5, torch.rand(2, 2, 4, 4) * 0.5 + 0.5)
    with_inplace = ibp.interval_bounds(model, box), crown.crown_bounds(model, box)
    assert model.relu.inplace  # the user's model is left as it was
    model.relu.inplace = False
    without = ibp.interval_bounds(model, box), crown.crown_bounds(model, box)
    for a, b in zip(with_inplace, without):
        assert torch.equal(a.lower, b.lower) and torch.equal(a.upper, b.upper)
    out = model(box.centre)
    assert (without[1].lower <= out + 1e-5).all() and (out <= without[1].upper + 1e-5).all()


def test_lazy_layers_are_materialised_in_the_model_before_copying() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).eval()
    x = torch.rand(5, 1, 6, 6)
    bounds = ibp.interval_bounds(model, Box(x - 0.01, x + 0.01))
    out = model(x)  # the weights the bounds were computed with
    assert (bounds.lower <= out + 1e-6).all() and (out <= bounds.upper + 1e-6).all()


@pytest.mark.parametrize(
    "layer",
    [nn.ELU(alpha=-2.0), nn.CELU(alpha=-1.0), nn.Softplus(beta=2.0, threshold=1.0), nn.AvgPool2d(2, divisor_override=1)],
    ids=["elu-negative-alpha", "celu-negative-alpha", "softplus-low-threshold", "avgpool-divisor-override"],
)
def test_layers_not_monotone_as_configured_are_refused_by_ibp(layer: nn.Module) -> None:
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="unsupported"):
        ibp.interval_bounds(nn.Sequential(layer), Box(x - 0.5, x + 0.5))


@pytest.mark.parametrize(
    "call",
    [lambda x: F.elu(x, -2.0), lambda x: F.softplus(x, 2.0, 1.0), lambda x: F.avg_pool2d(x, 2, divisor_override=1),
     lambda x: F.leaky_relu(x, -0.5), lambda x: F.leaky_relu(x, negative_slope=-0.5)],
    ids=["elu", "softplus", "avg_pool2d", "leaky_relu", "leaky_relu_keyword"],
)
def test_functional_forms_not_monotone_as_configured_are_refused_by_ibp(call) -> None:  # noqa: ANN001
    class Functional(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return call(x)

    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="unsupported"):
        ibp.interval_bounds(Functional(), Box(x - 0.5, x + 0.5))


def test_elu_with_negative_alpha_lipschitz_bound_holds() -> None:
    """ELU(alpha=-2) has slope |alpha| e^x, up to 2 just below 0 (the old bound took max(1, alpha) = 1)."""
    model = nn.Sequential(nn.Linear(3, 3), nn.ELU(alpha=-2.0), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3))
        model[0].bias.fill_(-1e-3)
        model[2].weight.copy_(torch.eye(3)[:2])
        model[2].bias.zero_()
    bound, _ = lipschitz_bound(model, torch.rand(1, 3))
    x = (torch.rand(4096, 3) * 1e-3).requires_grad_(True)
    for k in range(2):
        grad = torch.autograd.grad(model(x)[:, k].sum(), x)[0]
        assert float(grad.norm(dim=1).max()) <= bound * (1 + 1e-6)


class _Broadcast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (x.unsqueeze(1) * torch.ones(1, 16, 1)).flatten(1)


class _Attribute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.a(x) + 10 * self.b(x.mT.mT)


@pytest.mark.parametrize(
    "model",
    [_Broadcast(), _Attribute(), nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.AvgPool2d(2, divisor_override=1), nn.Flatten())],
    ids=["broadcast-copies-input", "tensor-attribute", "avgpool-divisor-override"],
)
def test_lipschitz_refuses_what_it_cannot_bound(model: nn.Module) -> None:
    example = torch.rand(1, 3) if not isinstance(model, nn.Sequential) else torch.rand(1, 1, 4, 4)
    with pytest.raises(ConfigError, match="Lipschitz: unsupported"):
        lipschitz_bound(model.eval(), example)


def test_crown_refuses_training_mode_batchnorm() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    graph = fx.symbolic_trace(model)
    graph.train()
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="eval mode"):
        crown.crown_bounds(graph, Box(x - 0.1, x + 0.1))


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("hook", ["forward", "pre", "global"])
def test_forward_hooks_are_refused(hook: str) -> None:
    # a hook scaling a layer's output runs in the model and in its traced graph, but the rules read
    # the weights: IBP's bounds missed outputs by 0.1 and the Lipschitz bound fell below the Jacobian's
    model = _mlp()
    handles = []
    if hook == "forward":
        handles.append(model[0].register_forward_hook(lambda m, i, o: 5 * o))
    elif hook == "pre":
        handles.append(model[2].register_forward_pre_hook(lambda m, i: (2 * i[0],)))
    else:
        handles.append(nn.modules.module.register_module_forward_hook(lambda m, i, o: o))
    x = torch.rand(2, 4)
    try:
        for certify in (lambda: ibp.interval_bounds(model, Box(x - 0.1, x + 0.1)),
                        lambda: crown.crown_bounds(model, Box(x - 0.1, x + 0.1)), lambda: lipschitz_bound(model, x)):  # fmt: skip
            with pytest.raises(ConfigError, match="hook"):
                certify()
    finally:
        for handle in handles:
            handle.remove()


def test_a_forward_set_on_the_instance_is_not_the_layer_class() -> None:
    model = _mlp()
    original = nn.Linear.forward
    model[0].forward = lambda h: 4.0 * original(model[0], h) + 1.0  # an adapter patched onto the layer
    x = torch.rand(2, 4)
    for certify in (lambda: ibp.interval_bounds(model, Box(x - 0.1, x + 0.1)),
                    lambda: crown.crown_bounds(model, Box(x - 0.1, x + 0.1)), lambda: lipschitz_bound(model, x)):  # fmt: skip
        with pytest.raises(ConfigError, match="with its own forward"):
            certify()


def test_a_model_that_cannot_be_copied_is_one_error() -> None:
    class Uncopyable(nn.Linear):
        def __deepcopy__(self, memo: dict) -> None:
            raise RuntimeError("Only Tensors created explicitly by the user support the deepcopy protocol")

    model = nn.Sequential(Uncopyable(4, 3)).eval()
    with pytest.raises(ConfigError, match="cannot be copied for tracing: Only Tensors"):
        trace(model, torch.rand(2, 4))


def test_softplus_step_at_its_threshold_is_in_the_box_and_refused_by_lipschitz() -> None:
    # torch's Softplus drops by log1p(exp(-20)) = 2.1e-9 where it switches to the identity (beta x >
    # 20): visible in float64, where IBP had returned lower > upper and verified a counterexample
    model = nn.Sequential(nn.Linear(1, 1), nn.Softplus(), nn.Linear(1, 2)).double().eval()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(19.5)
        model[2].weight.copy_(torch.tensor([[1.0], [0.0]]))
        model[2].bias.copy_(torch.tensor([0.0, 20.0 + 0.5e-9], dtype=torch.float64))
    x = torch.tensor([[0.5]], dtype=torch.float64)
    box = ibp.input_box(x, 1e-9)
    points = torch.linspace(0.5 - 1e-9, 0.5 + 1e-9, 2001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        out = model(points)
    bounds = ibp.interval_bounds(model, box)
    assert (bounds.lower <= bounds.upper).all()
    assert (bounds.lower <= out).all() and (out <= bounds.upper).all()
    assert (out.argmax(1) == 1).any() and not ibp.verified(model, x, torch.tensor([0]), 1e-9)
    with pytest.raises(ConfigError, match="Lipschitz: unsupported layer '1' \\(Softplus\\)"):
        lipschitz_bound(model, x)
    smooth = nn.Sequential(nn.Linear(1, 1), nn.Softplus(threshold=float("inf")), nn.Linear(1, 2)).eval()
    assert lipschitz_bound(smooth, torch.rand(1, 1))[0] > 0  # never switches: 1-Lipschitz


def test_division_by_a_constant_is_bounded_as_the_model_divides() -> None:
    # x * (1 / c) rounds 1 / c in c's dtype: a float64 model dividing by a float32 constant had its
    # counterexample verified
    class Divides(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return self.fc(x / torch.tensor(3.0))

    model = Divides().double().eval()
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[0.0], [1.0]]))
        model.fc.bias.copy_(torch.tensor([0.166666669, 0.0], dtype=torch.float64))
    x = torch.tensor([[0.6]], dtype=torch.float64)
    assert model(torch.tensor([[0.5]], dtype=torch.float64)).argmax(1).item() == 0  # inside the box, not class 1
    assert not ibp.verified(model, x, torch.tensor([1]), 0.1)


def test_bad_arguments_of_the_box_verifiers_are_one_error() -> None:
    model = nn.Sequential(nn.Linear(1, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model[0].bias.zero_()
    x, y = torch.tensor([[-0.05]]), torch.tensor([0])  # misclassified: margin -0.1
    for verify in (ibp.verified, crown.verified):
        # a negative eps inverted the box, in which the misclassified x was "verified"
        with pytest.raises(ConfigError, match="eps >= 0"):
            verify(model, x, y, -0.2, (-1.0, 1.0))
        with pytest.raises(ConfigError, match="outside the input bounds"):
            verify(model, torch.tensor([[1.5]]), y, 0.1)
        with pytest.raises(ConfigError, match=r"labels must lie in \[0, 2\)"):
            verify(model, torch.tensor([[0.5]]), torch.tensor([5]), 0.1)

    class ThreeDimensional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return self.fc(x).unsqueeze(-1)

    with pytest.raises(ConfigError, match="expected \\(batch, classes\\) logits"):  # CROWN refuses the unsqueeze
        ibp.verified(ThreeDimensional().eval(), torch.tensor([[0.5]]), y, 0.1)


def test_crown_refuses_a_reshape_that_folds_examples_into_the_batch() -> None:
    class Folds(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(32, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            return torch.relu(self.fc(x.reshape(-1, 32))).reshape(-1, 4)

    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(ConfigError, match="changes the batch dimension"):
        crown.crown_bounds(Folds().eval(), Box(x - 0.05, x + 0.05))


def test_a_bit_view_is_refused_by_every_certifier() -> None:
    """``x.view(torch.bfloat16)`` reads the bits as another type (a step function of the values) and
    passed as a shape method: Lipschitz bounded by 1 a model whose difference ratio was 32 (review of
    2026-12-04)."""
    from robench._errors import ConfigError
    from robench.certify import crown, ibp, lipschitz

    class BitView(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2 * 3 * 8 * 8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = (x + 1024.0) - 1024.0
            return self.fc(q.view(torch.bfloat16).float().flatten(1))

    net = BitView().eval()
    x, y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1])
    with pytest.raises(ConfigError):
        lipschitz.lipschitz_bound(net, x)
    with pytest.raises(ConfigError):
        ibp.verified(net, x, y, 0.01)
    with pytest.raises(ConfigError):
        crown.verified(net, x, y, 0.01)


class _AutocastLinear(nn.Module):
    """A linear layer run under bf16 autocast inside the forward, its logits offset by 100 (so that
    the graph check's tolerance, relative to the logits, let the bf16 rounding through)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.1, -1.2], [1.2, -1.3]]))
        self.register_buffer("offset", torch.tensor([100.0, 100.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = self.fc(x)
        return h + self.offset


def test_autocast_inside_the_forward_is_refused_not_verified() -> None:
    """fx runs a ``with torch.autocast(...)`` block at trace time and records its operations without
    it: the graph bounded float32 (or real) arithmetic while the model computed in bf16. At x = (196,
    203) / 255 the real margin of class 0 is 0.0027 and IBP verified it at eps 1e-5 with the rounding
    allowance, yet the model itself predicts class 1 there (bf16 margin -0.0034)."""
    model = _AutocastLinear().eval()
    x = torch.tensor([[196.0, 203.0]]) / 255
    with torch.no_grad():
        assert int(model(x).argmax(1)) == 1  # the counterexample: x itself
    for verify in (ibp.verified, crown.verified):
        with pytest.raises(ConfigError, match="autocast"):
            verify(model, x, torch.tensor([0]), 1e-5)
    with pytest.raises(ConfigError, match="autocast"):
        lipschitz_bound(model, x)


class _TF32Switch(nn.Module):
    """A linear layer whose forward turns TF32 matmuls on (global state, run once at trace time)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        return self.linear(x)


def test_a_tf32_switch_inside_the_forward_is_refused() -> None:
    """Like autocast, a TF32 switch in the forward is not in the graph: the bounds would be of
    float32 matmuls the model runs with 10-bit mantissas on a GPU."""
    from tests._devices import backend_setting

    x = torch.rand(1, 2)
    with backend_setting(torch.backends.cuda.matmul, "fp32_precision", torch.backends.cuda.matmul.fp32_precision):
        with pytest.raises(ConfigError, match="TF32"):
            ibp.verified(_TF32Switch().eval(), x, torch.tensor([0]), 1e-5)


def test_tracing_leaves_every_layers_mode_as_it_was() -> None:
    """The trace check runs the user's model in eval mode and restored it with ``root.train(root
    .training)``, which sets every layer to the root's mode: a training-mode container around an eval
    BatchNorm (frozen statistics) came back with its BatchNorm training, and the next forward pass
    overwrote the running statistics."""
    bn = nn.BatchNorm1d(4).eval()
    model = nn.Sequential(nn.Linear(4, 4), bn, nn.Dropout(0.5), nn.Linear(4, 2))  # the container: training
    model[2].eval()
    before = {name: layer.training for name, layer in model.named_modules()}
    x = torch.rand(3, 4)
    trace(model, x)
    assert {name: layer.training for name, layer in model.named_modules()} == before
    mean = bn.running_mean.clone()
    with torch.no_grad():
        model(x)
    assert torch.equal(bn.running_mean, mean)  # still frozen
