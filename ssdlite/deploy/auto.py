"""``backend="auto"``: the fastest installed back end for a model file on this machine, measured once.

The candidates are the rows of :data:`~ssdlite.deploy.backends.BACKENDS` that run the file's kind
and whose package is installed (a ``.onnx``: onnxruntime, openvino if installed). Each candidate
runs the file at its exact precision (what the file holds: fp32, or int8 for a quantized graph;
never OpenVINO's opt-in bf16) on a fixed random normalized batch: a few warm-up runs, then rounds
that alternate between the candidates (so a busy machine slows them alike), about
``runs`` timed runs each or fewer when ``budget_s`` is spent. The lowest median wins.

The choice is cached in ``backend_choice.json`` under the cache folder (``$SSDLITE_CACHE_DIR``, else
``$XDG_CACHE_HOME/ssdlite``, else ``~/.cache/ssdlite``), keyed by the file's SHA-256, the CPU
(:func:`~ssdlite.deploy.machine.cpu_description`), the thread count and the runtimes' versions, and
written atomically; a corrupt cache is ignored and rewritten. Any change of those measures again.

Rules without a measurement: a checkpoint (not ``.onnx``) runs on torch (the other back ends need
an export: ``ssdlite export``); a single installed candidate is taken as is; a candidate that fails
to load or run is dropped (the reason is in :attr:`Choice.reason`); if none can be measured, the
file kind's default back end (:func:`~ssdlite.deploy.backends.default_backend`) is used. Imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Choice", "choose_backend", "candidates", "cache_dir", "CACHE_ENV", "CACHE_FILE"]

log = logging.getLogger("ssdlite.deploy")

CACHE_ENV = "SSDLITE_CACHE_DIR"
CACHE_FILE = "backend_choice.json"
_CACHE_VERSION = 1
_said: set[str] = set()  # choices already logged by this process


@dataclass
class Choice:
    """The back end ``auto`` picked, why, and the median milliseconds per run it measured."""

    backend: str
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached: bool = False


def cache_dir() -> Path:
    """``$SSDLITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ssdlite``, else ``~/.cache/ssdlite``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "ssdlite"


def candidates(path: str | Path) -> list[str]:
    """The installed file back ends that run ``path``, in table order."""
    from ssdlite.deploy.backends import BACKENDS, installed

    suffix = Path(path).suffix.lower()
    return [b.name for b in BACKENDS.values() if b.runner and suffix in b.suffixes and installed(b.name)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(name: str) -> str:
    from ssdlite.deploy.backends import BACKENDS

    try:
        return importlib_metadata.version(BACKENDS[name].package or name)
    except importlib_metadata.PackageNotFoundError:
        return "?"


def _key(path: Path, names: list[str], threads: int | None) -> str:
    from ssdlite.deploy.machine import cpu_description

    versions = ",".join(f"{n}={_version(n)}" for n in names)
    return f"{_sha256(path)}|{cpu_description()}|threads={threads or 'default'}|{versions}"


def _read_cache(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION or not isinstance(data.get("choices"), dict):
            raise ValueError("not a backend choice cache of this version")
        return data
    except FileNotFoundError:
        return {"version": _CACHE_VERSION, "choices": {}}
    except (OSError, ValueError) as e:
        log.warning("ignoring the unreadable backend choice cache %s (%s); it will be rewritten", file, e)
        return {"version": _CACHE_VERSION, "choices": {}}


def _write_cache(file: Path, key: str, choice: Choice) -> None:
    from ssdlite.files import atomic_write

    data = _read_cache(file)
    data["choices"][key] = {"backend": choice.backend, "reason": choice.reason, "timings_ms": choice.timings_ms,
                            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    text = json.dumps(data, indent=1, sort_keys=True)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(file, lambda f: f.write(text.encode("utf-8")))
    except OSError as e:  # a read-only home: the choice still holds for this process
        log.warning("cannot write the backend choice cache %s (%s)", file, e)


def _measure(path: Path, names: list[str], threads: int | None, runs: int, budget_s: float) -> tuple[dict[str, float], list[str]]:
    """Median ms per run of each candidate that loads and runs, and why the others were dropped."""
    from ssdlite.deploy.backends import make_runner

    runners, dropped = {}, []
    for name in names:
        try:
            runner = make_runner(name, path, threads=threads)
            if getattr(runner, "outputs", "raw") != "raw":
                run = runner.detect
            else:
                run = runner
            h, w = runner.input_size
            batch = np.random.default_rng(0).standard_normal((runner.batch_size or 1, 3, h, w)).astype(np.float32)
            for _ in range(3):  # warm-up: first runs allocate and pick kernels
                run(batch)
            runners[name] = (run, batch)
        except Exception as e:  # a runtime that cannot run this file is simply not a candidate
            dropped.append(f"{name} failed ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})")
    times: dict[str, list[float]] = {n: [] for n in runners}
    start = time.perf_counter()
    per_round = 4
    while runners and min(len(t) for t in times.values()) < runs:
        for name, (run, batch) in runners.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                run(batch)
                times[name].append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and min(len(t) for t in times.values()) >= per_round * 2:
            break
    return {n: round(float(np.median(t)) * 1e3, 3) for n, t in times.items()}, dropped


def choose_backend(
    path: str | Path,
    threads: int | None = None,
    *,
    runs: int = 20,
    budget_s: float = 3.0,
    use_cache: bool = True,
) -> Choice:
    """The back end ``backend="auto"`` runs ``path`` on (see the module docstring for the rules)."""
    from ssdlite.deploy.backends import default_backend

    path = Path(path)
    if default_backend(path) == "torch":
        return _said_once(str(path), Choice("torch", "a checkpoint runs on torch (export it to .onnx for the other back ends)"))
    names = candidates(path)
    if not names:
        fallback = default_backend(path)
        return _said_once(str(path), Choice(fallback, f"no back end for {path.suffix} files is installed; the default {fallback}"))
    if len(names) == 1:
        return _said_once(str(path), Choice(names[0], f"the only installed back end for {path.suffix} files"))
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    key = _key(path, names, threads)
    file = cache_dir() / CACHE_FILE
    if use_cache:
        row = _read_cache(file)["choices"].get(key)
        if isinstance(row, dict) and row.get("backend") in names:
            choice = Choice(row["backend"], f"{row.get('reason', 'measured')} (cached in {file})",
                            dict(row.get("timings_ms") or {}), cached=True)
            return _said_once(key, choice)
    timings, dropped = _measure(path, names, threads, runs, budget_s)
    note = f"; {', '.join(dropped)}" if dropped else ""
    if timings:
        best = min(timings, key=timings.get)
        shown = ", ".join(f"{n} {ms:.2f} ms" for n, ms in sorted(timings.items(), key=lambda kv: kv[1]))
        choice = Choice(best, f"fastest measured here: {shown} median per run, threads={threads or 'default'}{note}", timings)
    else:
        fallback = default_backend(path)
        return _said_once(key, Choice(fallback, f"nothing could be measured{note}; the default {fallback}"))
    _write_cache(file, key, choice)
    return _said_once(key, choice)


def _said_once(key: str, choice: Choice) -> Choice:
    if key not in _said:
        _said.add(key)
        log.info("backend auto: %s (%s)", choice.backend, choice.reason)
    return choice
