"""Where the shared real test data lives (``../shared/data`` beside the repo, or $SSDLITE_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """The real-data folder, or None when it is absent (a user's clone)."""
    env = os.environ.get("SSDLITE_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None
