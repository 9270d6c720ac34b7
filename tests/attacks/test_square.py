"""robench's standalone Square equals the authors' attack as pyautoattack ships it, default schedule."""

from __future__ import annotations

import pytest
import torch

square_module = pytest.importorskip("pyautoattack.square")

from robench.attacks.square import Square  # noqa: E402


def test_equals_reference_with_its_default_schedule(handle, mnist_test):
    """Same seed, same queries: the same adversarial examples as ``SquareAttack`` with its defaults
    (p_init 0.8, the p schedule rescaled to the query budget)."""
    x, y = mnist_test.load(slice(0, 24))
    result = Square(n_queries=200)(handle.module, x, y, norm="Linf", eps=0.15, generator=torch.Generator().manual_seed(5))
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=torch.Generator().manual_seed(5)))
    reference = square_module.SquareAttack(handle.module, norm="Linf", n_queries=200, eps=0.15, seed=seed, device="cpu")
    with torch.no_grad():
        expected = reference.perturb(x, y)
    assert torch.allclose(result.x_adv, expected, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(result.success, handle.module(expected).argmax(1) != y)
    assert result.success.any() and not result.success.all()


def test_on_a_randomized_model_every_example_is_attacked_and_kept(trained_net, mnist_test):
    """pyautoattack's perturb attacks only what its first pass classifies right and returns x wherever
    one pass at its point is right: on a randomized model both verdicts are draws, and robench then
    measured the clean input as the adversary's point. Here the first pass misclassifies everything."""
    class WrongOnFirstCall(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.calls = trained_net, 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return -self.net(x) if self.calls == 1 else self.net(x)

    x, y = mnist_test.load(slice(0, 16))
    generator = torch.Generator().manual_seed(0)
    plain = Square(n_queries=30)(WrongOnFirstCall(), x, y, norm="Linf", eps=0.1, generator=generator)
    assert torch.equal(plain.x_adv, x)  # nothing attacked
    every = Square(n_queries=30, restarts=2).for_randomized_model()
    result = every(WrongOnFirstCall(), x, y, norm="Linf", eps=0.1, generator=torch.Generator().manual_seed(0))
    assert bool((result.x_adv != x).flatten(1).any(dim=1).all())
    assert (result.x_adv - x).abs().max() <= 0.1 + 1e-6
