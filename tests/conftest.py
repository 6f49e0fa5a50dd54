"""Shared fixtures: the real-data folder and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssdlite._paths import REPO_ROOT, shared_data_dir

CONFIGS = REPO_ROOT / "configs"
PAPER_CONFIGS = sorted(CONFIGS.glob("ssdlite320_*.yaml"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run under pytest-xdist on 2 cores: one torch thread per worker avoids oversubscription."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is absent (a user's clone); set SSDLITE_DATA to run the real-data tests")
    return d
