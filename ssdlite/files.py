"""Files written whole or not at all: checkpoints, exports, results, downloads.

:func:`atomic_write` writes to a temp file beside the target, fsyncs and renames it over the
target, so a crash, a full disk or ``kill -9`` never leaves a half-written file under the real
name; temp files left by dead writers of this host are removed by the next write.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write"]


def _temp_prefix(path: Path) -> str:
    # host and pid in the name let a later write tell a dead writer's leftover from a live one's
    return f".{path.name}.{socket.gethostname()}.{os.getpid()}."


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of ``path`` left by writers of this host that no longer run (``kill -9``).

    POSIX only (``os.kill(pid, 0)`` is a liveness probe there); a file whose writer may still be
    alive, or that belongs to another host sharing the folder, is left alone.
    """
    if os.name != "posix":
        return
    head = f".{path.name}."
    host = socket.gethostname()
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(head) and p.name.endswith(".tmp")]
    except OSError:
        return
    for p in candidates:
        parts = p.name[len(head):].rsplit(".", 3)  # host (may contain dots), pid, random, "tmp"
        if len(parts) != 4 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running (or a reused pid): not ours to remove
        except ProcessLookupError:
            pass
        except OSError:  # EPERM: alive under another user
            continue
        try:
            p.unlink()
        except OSError:
            pass


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync, then rename over ``path``.

    A crash or a failing write (e.g. a full disk) leaves the previous file at ``path`` intact and
    no temp file behind (after ``kill -9`` the temp file stays until the next write of ``path``
    removes it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    _remove_stale_temps(path)
