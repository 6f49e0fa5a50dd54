"""Where the shared real test data lives.

The real files (COCO samples, photos, videos, pycocotools' known answers) are not part of the
repository. :func:`shared_data_dir` finds them:

- ``$SSDLITE_DATA``, when it is set (and not empty), is authoritative: the folder it names is
  used if it is a folder, and the data counts as absent otherwise; nothing else is searched.
  ``SSDLITE_DATA=/nonexistent make test`` therefore runs the tests as a user's clone would.
- otherwise ``../shared/data`` beside the repository, then ``../shared/data`` beside the
  current directory; absent when neither is a folder.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "SSDLITE_DATA"


def shared_data_dir() -> Path | None:
    """The real-data folder, or None when it is absent (a user's clone, or ``$SSDLITE_DATA`` not a folder)."""
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    for candidate in (REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None
