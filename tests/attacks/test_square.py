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
