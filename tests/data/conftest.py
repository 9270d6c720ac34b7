"""Keep the checksum cache of these tests out of the user's cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_checksum_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("robench-cache")
    monkeypatch.setenv("ROBENCH_CACHE", str(cache))
    return cache
