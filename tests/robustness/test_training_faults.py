"""Interrupted and failing training: kill -9 and --resume, SIGTERM, a full disk, a diverging learning rate.

Short CPU runs of tools/train.py in a subprocess (MobileNetV3-Small x0.5 at 128 px on 12 shapes
images, 3 steps per epoch). The reference is the same config trained without interruption in
this process: training is deterministic on CPU with one thread, so a resumed run must end
with bit-identical weights (compared with ``torch.equal``).

The kill -9 and SIGTERM trials signal at random moments. Each prints the seed it drew (pytest
shows it with a failure) and names it in its assertion messages; ``SSDLITE_FAULT_SEED=<seed>``
replays the same moments (as far as the machine's speed allows).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO_ROOT, ShapesData, run_tool, shapes_config, tiny_model, write_config
from ssdlite.model.checkpoint import load_checkpoint, save_checkpoint
from ssdlite.config import from_dict

EPOCHS = 6  # x 3 steps; every run of this module uses this config unless it says otherwise
SEED_ENV = "SSDLITE_FAULT_SEED"  # replays a trial's random moments: the seed it printed


def _config(shapes_data: ShapesData, **train) -> dict:
    t = {"epochs": EPOCHS, "ema": True, "warmup_epochs": 1.0}
    t.update(train)
    cfg = shapes_config(shapes_data, **t)
    cfg["data"]["val"] = {"images": None, "annotations": None}  # no evaluation: last.pt is the product
    return cfg


@pytest.fixture(scope="module")
def run_config(shapes_data: ShapesData, tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg") / "train.yaml", _config(shapes_data))


@pytest.fixture(scope="module")
def reference(run_config: Path, tmp_path_factory) -> dict:
    """last.pt of the uninterrupted run (in this process, one thread)."""
    from ssdlite.config import load_config
    from ssdlite.train.trainer import Trainer

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reference")
    Trainer(load_config(run_config), out, progress=False).fit()
    return load_checkpoint(out / "last.pt")


@pytest.fixture
def seed(request: pytest.FixtureRequest, record_property) -> int:
    """The seed of a trial's random moments: ``$SSDLITE_FAULT_SEED`` (a replay) or a fresh one.

    Printed (pytest shows it with a failure's captured output) and recorded as the case's
    ``seed`` property (tools/robustness.py's table names it with a failure)."""
    env = os.environ.get(SEED_ENV)
    value = int(env) if env else random.SystemRandom().randrange(2**32)
    slow = " -m slow" if request.node.get_closest_marker("slow") else ""
    print(f"{request.node.name}: seed {value} (replay: {SEED_ENV}={value} python -m pytest{slow} '{request.node.nodeid}')")
    record_property("seed", value)
    return value


def _assert_same_weights(a: dict, b: dict, tag: str = "") -> None:
    prefix = f"[{tag}] " if tag else ""
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]), f"{prefix}epoch, step {(a['epoch'], a['step'])} != {(b['epoch'], b['step'])}"
    for part in ("model", "ema"):
        x, y = a[part], b[part]
        assert x.keys() == y.keys(), f"{prefix}{part}: other tensor names"
        different = [k for k in x if not torch.equal(x[k], y[k])]
        assert not different, f"{prefix}{part}: {len(different)} tensors differ after resume, e.g. {different[:3]}"


def _temp_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))


class TrainProcess:
    """tools/train.py in a subprocess (one thread), its output collected line by line."""

    def __init__(self, config: Path, out: Path, resume: bool = False, extra: list[str] | None = None) -> None:
        cmd = [sys.executable, str(REPO_ROOT / "tools" / "train.py"), "--config", str(config), "--output", str(out),
               "--no-progress", "--threads", "1", *(["--resume"] if resume else []), *(extra or [])]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO_ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, condition, timeout: float = 120.0) -> bool:
        """Poll ``condition()`` until true (True) or the process ends first (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            if self.proc.poll() is not None:
                return bool(condition())
            time.sleep(0.01)
        raise TimeoutError(f"condition not met within {timeout} s; output:\n{self.output[-3000:]}")

    def finish(self, timeout: float = 180.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        return code

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)


def _resume_in_process(run_config: Path, out: Path) -> None:
    from ssdlite.config import load_config
    from ssdlite.train.trainer import Trainer

    Trainer(load_config(run_config), out, resume=True, progress=False).fit()


def _trial_tag(seed: int, trial: int | None = None) -> str:
    return f"seed {seed}" if trial is None else f"seed {seed}, trial {trial}"


def _kill_trial(run_config: Path, out: Path, seed: int, kills: int, resume_in_subprocess: bool, capsys,
                trial: int | None = None) -> list[str]:
    """Train, kill -9 at random moments ``kills`` times, resume each time; returns what happened.

    The moments depend on ``seed`` (and ``trial``) alone; the seed heads every failure message."""
    tag = _trial_tag(seed, trial)
    rng = random.Random(seed if trial is None else f"{seed}/{trial}")
    try:
        return _kill_and_resume(run_config, out, rng, kills, resume_in_subprocess, capsys, tag)
    except Exception as e:  # a timeout or an error of the run, not only the assertions: name the seed too
        if f"[{tag}]" not in str(e):
            e.add_note(f"[{tag}] replay: {SEED_ENV}={seed}")
        raise


def _kill_and_resume(run_config: Path, out: Path, rng: random.Random, kills: int, resume_in_subprocess: bool, capsys,
                     tag: str) -> list[str]:
    log = []
    previous = None
    finished = False
    for k in range(kills):
        resume = (out / "last.pt").exists()
        run = TrainProcess(run_config, out, resume=resume)
        try:
            if k == 0:  # first kill after the first checkpoint, so that --resume has something to start from
                run.wait_for(lambda: (out / "last.pt").exists())
                delay = rng.uniform(0.0, 0.6)
            else:
                run.wait_for(lambda: any(line.startswith(("data:", "resumed from")) for line in run.lines))
                delay = rng.uniform(0.0, 2.0)
            time.sleep(delay)
            run.signal(signal.SIGKILL)
        finally:
            code = run.finish()
        if resume:  # it started from the last complete checkpoint (unless killed before it got that far)
            expected = f"resumed from {out / 'last.pt'}: epoch {previous['epoch']}, step {previous['step']}"
            resumed = [line for line in run.lines if line.startswith("resumed from")]
            assert resumed == [expected] or (not resumed and code != 0), f"[{tag}] kill {k}: resumed {resumed}, expected {expected!r}"
        if code == 0:
            log.append(f"kill {k}: the run finished before the kill")
            finished = True
            break
        assert code == -signal.SIGKILL, f"[{tag}] kill {k}: exit code {code}, not -9\n{run.output[-2000:]}"
        if (out / "last.pt").exists():
            state = load_checkpoint(out / "last.pt")  # always loads
            assert state["epoch_step"] == 0, f"[{tag}] kill {k}: kill -9 cannot leave a mid-epoch checkpoint: only epoch ends are saved"
            if previous is not None:
                assert state["step"] >= previous["step"], f"[{tag}] kill {k}: last.pt went back from step {previous['step']} to {state['step']}"
            previous = state
            log.append(f"kill {k} after {delay:.2f} s: last.pt at epoch {state['epoch']}")
        else:
            log.append(f"kill {k} after {delay:.2f} s: before the first checkpoint")
    if finished:
        pass
    elif resume_in_subprocess:
        resume = (out / "last.pt").exists()
        run = TrainProcess(run_config, out, resume=resume)
        assert run.finish() == 0, f"[{tag}] the last resume failed\n{run.output[-3000:]}"
        if resume and previous is not None:
            expected = f"resumed from {out / 'last.pt'}: epoch {previous['epoch']}, step {previous['step']}"
            assert expected in run.output, f"[{tag}] the last resume did not say {expected!r}"
    else:
        _resume_in_process(run_config, out)
        if previous is not None:
            expected = f"resumed from {out / 'last.pt'}: epoch {previous['epoch']}, step {previous['step']}"
            assert expected in capsys.readouterr().out, f"[{tag}] the last resume did not say {expected!r}"
    assert _temp_files(out) == [], f"[{tag}] temp files left behind"
    return log


# ----------------------------------------------------------------------------- kill -9


@pytest.mark.fault("kill -9 during training (1 trial at a random moment; seed logged, SSDLITE_FAULT_SEED replays it)",
                   "--resume starts from the last complete checkpoint, which loads; final weights equal an "
                   "uninterrupted run's (torch.equal)")
def test_kill9_then_resume_reaches_the_same_weights(run_config, reference, seed, tmp_path, capsys) -> None:
    _kill_trial(run_config, tmp_path / "run", seed, kills=1, resume_in_subprocess=False, capsys=capsys)
    _assert_same_weights(load_checkpoint(tmp_path / "run" / "last.pt"), reference, _trial_tag(seed))


@pytest.mark.slow
@pytest.mark.fault("kill -9 at random moments (4 trials, up to 3 kills each; seed logged, SSDLITE_FAULT_SEED replays "
                   "them)", "every --resume starts from the last complete checkpoint, which always loads; every trial "
                   "ends with the uninterrupted run's weights")
def test_kill9_random_moments_trials(run_config, reference, seed, tmp_path, capsys) -> None:
    for trial in range(4):
        out = tmp_path / f"trial{trial}"
        log = _kill_trial(run_config, out, seed, kills=3, resume_in_subprocess=True, capsys=capsys, trial=trial)
        _assert_same_weights(load_checkpoint(out / "last.pt"), reference, _trial_tag(seed, trial))
        with capsys.disabled():
            print(f"\ntrial {trial} (seed {seed}): " + "; ".join(log) + "; resumed run equals the uninterrupted one")


@pytest.mark.slow
@pytest.mark.fault("uninterrupted subprocess run", "tools/train.py in a subprocess ends with the in-process run's weights "
                   "(the determinism the resume checks rely on)")
def test_subprocess_run_is_deterministic(run_config, reference, tmp_path) -> None:
    run = TrainProcess(run_config, tmp_path / "run")
    assert run.finish() == 0, run.output[-3000:]
    _assert_same_weights(load_checkpoint(tmp_path / "run" / "last.pt"), reference)


# ----------------------------------------------------------------------------- SIGTERM


@pytest.mark.fault("SIGTERM during training (at a random moment; seed logged)", "a checkpoint is written, exit code 0; resuming from it gives the "
                   "uninterrupted run's weights")
def test_sigterm_saves_and_exits_cleanly(run_config, reference, seed, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    run = TrainProcess(run_config, out)
    try:
        run.wait_for(lambda: (out / "last.pt").exists())
        time.sleep(random.Random(seed).uniform(0.0, 0.1))
        run.signal(signal.SIGTERM)
    finally:
        code = run.finish()
    assert code == 0, f"[seed {seed}]\n{run.output[-3000:]}"
    assert "SIGTERM: saved" in run.output
    state = load_checkpoint(out / "last.pt")
    assert state["step"] < EPOCHS * 3
    assert _temp_files(out) == []
    _resume_in_process(run_config, out)
    _assert_same_weights(load_checkpoint(out / "last.pt"), reference, _trial_tag(seed))


# ----------------------------------------------------------------------------- a full disk


class _FullDisk:
    """A file object that accepts ``room`` bytes, then raises ENOSPC (what write() does on a full disk)."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self.f.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


def _small_model_and_config():
    from ssdlite.model import build_model

    cfg = from_dict({"model": tiny_model(2)})
    return build_model(cfg, load_backbone_weights=False), cfg


@pytest.mark.parametrize("where", [
    pytest.param("write", marks=pytest.mark.fault("disk full while writing a checkpoint", "OSError ENOSPC naming the file; "
                                                  "previous checkpoint intact and loadable; no temp file left")),
    pytest.param("fsync", marks=pytest.mark.fault("disk full at fsync of a checkpoint", "OSError ENOSPC naming the file; "
                                                  "previous checkpoint intact and loadable; no temp file left")),
])
def test_disk_full_keeps_previous_checkpoint(where, tmp_path, monkeypatch) -> None:
    import ssdlite.files as ck

    model, cfg = _small_model_and_config()
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, cfg, epoch=1)
    before = path.read_bytes()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(ck.os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k), room=4096))
    else:
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(ck.os, "fsync", fsync)
    with pytest.raises(OSError) as e:
        save_checkpoint(path, model, cfg, epoch=2)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC
    msg = str(e.value)
    assert str(path) in msg and "No space left on device" in msg and "previous file (if any) is intact" in msg
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
    assert _temp_files(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd to tell checkpoint writes apart")
@pytest.mark.fault("disk full during a training run", "tools/train.py exits 2 with one line naming last.pt and ENOSPC; "
                   "the previous epoch's last.pt is intact")
def test_disk_full_during_training(shapes_data: ShapesData, tmp_path, monkeypatch, capsys) -> None:
    import ssdlite.files as ck

    cfg = write_config(tmp_path / "c.yaml", _config(shapes_data, epochs=3, ema=False))
    out = tmp_path / "run"
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync(fd):  # the second write of last.pt hits a full disk
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if ".last.pt." in target:
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(ck.os, "fsync", fsync)
    code = run_tool("train", ["--config", cfg, "--output", out, "--no-progress", "--threads", "1"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2
    assert f"could not write checkpoint {out / 'last.pt'}: No space left on device" in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert _temp_files(out) == []


@pytest.mark.fault("temp file left by a writer killed with -9", "the next write of that checkpoint removes it (dead pid "
                   "of this host only; a live writer's or another host's temp file is kept)")
def test_stale_temp_files_are_removed(tmp_path) -> None:
    import socket

    model, cfg = _small_model_and_config()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".last.pt.{host}.{dead.pid}.abc123.tmp"
    alive = tmp_path / f".last.pt.{host}.{os.getppid()}.def456.tmp"
    other_host = tmp_path / f".last.pt.other-host.example.{dead.pid}.ghi789.tmp"
    for p in (stale, alive, other_host):
        p.write_bytes(b"partial")
    save_checkpoint(tmp_path / "last.pt", model, cfg)
    assert not stale.exists() and alive.exists() and other_host.exists()
    assert load_checkpoint(tmp_path / "last.pt")["format"] == "ssdlite"


# ----------------------------------------------------------------------------- divergence


def _assert_no_nonfinite_checkpoint(out: Path) -> None:
    for path in sorted(out.glob("*.pt")):
        state = load_checkpoint(path)
        for part in ("model", "ema"):
            sd = state.get(part) or {}
            bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
            assert not bad, f"{path.name} {part} holds non-finite tensors: {bad[:3]}"


DIVERGE = ["--set", "train.lr=1e6", "--set", "train.clip_grad_norm=0", "--set", "train.epochs=4"]


@pytest.mark.fault("learning rate large enough to diverge (lr=1e6, no clipping)", "exit 2, one error line naming the "
                   "likely cause (learning rate) and the non-finite values; no checkpoint with NaN weights")
def test_divergence_stops_with_a_clear_error(shapes_data: ShapesData, tmp_path, capsys) -> None:
    cfg_dict = _config(shapes_data, ema=False)
    cfg_dict["data"]["val"] = shapes_config(shapes_data)["data"]["val"]  # evaluate, so best.pt is written too
    cfg = write_config(tmp_path / "c.yaml", cfg_dict)
    out = tmp_path / "run"
    code = run_tool("train", ["--config", cfg, "--output", out, "--no-progress", "--threads", "1", *DIVERGE])
    err = capsys.readouterr().err
    assert code == 2, err
    error = [line for line in err.splitlines() if line.startswith("train: error:")]
    assert len(error) == 1, err
    assert "learning rate" in error[0] and ("non-finite" in error[0] or "NaN" in error[0]), error[0]
    _assert_no_nonfinite_checkpoint(out)
    assert _temp_files(out) == []


@pytest.mark.slow
@pytest.mark.fault("diverging run as a subprocess", "tools/train.py exits 2 naming the learning rate; no NaN checkpoint")
def test_divergence_subprocess(shapes_data: ShapesData, tmp_path) -> None:
    cfg = write_config(tmp_path / "c.yaml", _config(shapes_data, ema=True))
    run = TrainProcess(cfg, tmp_path / "run", extra=DIVERGE)
    code = run.finish()
    assert code == 2, run.output[-3000:]
    assert "train: error:" in run.output and "learning rate" in run.output
    _assert_no_nonfinite_checkpoint(tmp_path / "run")


@pytest.mark.fault("NaN weights handed to save_checkpoint", "NonFiniteWeightsError naming the tensors and the learning "
                   "rate; nothing written, the previous file intact")
def test_save_refuses_nonfinite_weights(tmp_path) -> None:
    from ssdlite.model.checkpoint import NonFiniteWeightsError

    model, cfg = _small_model_and_config()
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, cfg, epoch=1)
    before = path.read_bytes()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteWeightsError, match=r"refusing to write .*last\.pt: 1 weight tensors hold NaN or inf .*train\.lr="):
        save_checkpoint(path, model, cfg, epoch=2, nonfinite_total=3)
    assert path.read_bytes() == before and _temp_files(tmp_path) == []


# ----------------------------------------------------------------------------- resume from a wrong or missing checkpoint


@pytest.mark.fault("--resume with no checkpoint yet", "either a clear error naming last.pt (exit 2) or a fresh start that "
                   "says so")
def test_resume_without_checkpoint(run_config, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = run_tool("train", ["--config", run_config, "--output", out, "--no-progress", "--resume",
                              "--set", "train.epochs=1"])
    captured = capsys.readouterr()
    if code == 2:
        assert f"{out / 'last.pt'} does not exist" in captured.err
    else:
        assert code == 0 and "last.pt" in captured.out + captured.err


@pytest.mark.fault("--resume from a truncated last.pt", "clear error naming the file (exit 2), nothing overwritten")
def test_resume_from_truncated_checkpoint(run_config, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    model, cfg = _small_model_and_config()
    save_checkpoint(out / "last.pt", model, cfg)
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])
    code = run_tool("train", ["--config", run_config, "--output", out, "--no-progress", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and f"checkpoint {out / 'last.pt'} is not readable" in err
    assert (out / "last.pt").read_bytes() == data[: len(data) // 2]


@pytest.mark.fault("--resume from a checkpoint of another config", "clear error naming the config keys that differ")
def test_resume_with_another_config_names_the_difference(run_config, reference, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    torch.save(reference, out / "last.pt")  # a complete checkpoint of the reference run
    code = run_tool("train", ["--config", run_config, "--output", out, "--no-progress", "--resume",
                              "--set", "model.extra_channels=[64,32,32,32]"])
    err = capsys.readouterr().err
    assert code == 2 and "different model config" in err
    assert "model.extra_channels" in err
