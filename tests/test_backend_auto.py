"""backend="auto": the installed back ends of a file are timed once, the choice is cached (a corrupt
cache is rewritten), a missing back end is no candidate, a checkpoint stays on torch."""

from __future__ import annotations

import json
import logging

import pytest

from helpers import SMALLEST_CONFIG, read_rgb, run_tool
from ssdlite.apps.bench.lively import lively_random_model
from ssdlite.config import load_config
from ssdlite.deploy import auto, backends
from ssdlite.deploy.auto import CACHE_FILE, candidates, choose_backend
from ssdlite.deploy.backends import BACKENDS, Backend
from ssdlite.deploy.detector import Detector
from ssdlite.deploy.export import export_onnx
from ssdlite.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def model(photo_set, tmp_path_factory):
    """(checkpoint, .onnx) of a small lively model."""
    tmp = tmp_path_factory.mktemp("auto")
    cfg = load_config(SMALLEST_CONFIG)
    ckpt = tmp / "m.pt"
    save_checkpoint(ckpt, lively_random_model(cfg, [read_rgb(p) for p in photo_set.pick("dog.jpg", "kite.jpg")], seed=2), cfg)
    return ckpt, export_onnx(ckpt, None, tmp / "m.onnx")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The cache folder of this test (SSDLITE_CACHE_DIR), and nothing logged yet."""
    monkeypatch.setenv("SSDLITE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(auto, "_said", set())
    return tmp_path / "cache" / CACHE_FILE


def _no_measuring(*args, **kwargs):
    raise AssertionError("measured again")


def test_the_choice_is_measured_once_and_reused(model, cache, monkeypatch, caplog):
    _, onnx_path = model
    names = candidates(onnx_path)
    if len(names) < 2:
        pytest.skip(f"only {names} installed: nothing to measure (pip install 'ssdlite[openvino]')")
    with caplog.at_level(logging.INFO, logger="ssdlite.deploy"):
        first = choose_backend(onnx_path, threads=1, runs=8)
        assert not first.cached and set(first.timings_ms) == set(names) and first.backend in names
        assert first.backend == min(first.timings_ms, key=first.timings_ms.get)
        assert "fastest measured here" in first.reason and all(t > 0 for t in first.timings_ms.values())
        stored = json.loads(cache.read_text())
        (row,) = stored["choices"].values()
        assert row["backend"] == first.backend and row["timings_ms"] == first.timings_ms
        monkeypatch.setattr(auto, "_measure", _no_measuring)
        second = choose_backend(onnx_path, threads=1)
    assert second.cached and second.backend == first.backend and second.timings_ms == first.timings_ms
    said = [r.getMessage() for r in caplog.records if "backend auto" in r.getMessage()]
    assert len(said) == 1 and first.backend in said[0]  # said once per process
    # another thread count is another key: measured again (here: refused by the stand-in)
    with pytest.raises(AssertionError, match="measured again"):
        choose_backend(onnx_path, threads=2)
    # Detector and the CLI take the cached choice
    det = Detector.from_checkpoint(onnx_path, backend="auto", threads=1)
    assert det.backend == first.backend and det.backend_choice.cached


def test_a_corrupt_cache_is_ignored_and_rewritten(model, cache, monkeypatch):
    _, onnx_path = model
    if len(candidates(onnx_path)) < 2:
        pytest.skip("one installed back end for .onnx: nothing to measure (pip install 'ssdlite[openvino]')")
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    choice = choose_backend(onnx_path, threads=1, runs=8)
    assert not choice.cached
    data = json.loads(cache.read_text())
    assert [r["backend"] for r in data["choices"].values()] == [choice.backend]
    cache.write_text(json.dumps({"version": 1, "choices": {"whatever": "not a row"}}))  # valid JSON, stale rows kept
    monkeypatch.setattr(auto, "_measure", lambda *a, **k: ({"onnxruntime": 1.0, "openvino": 2.0}, []))
    assert choose_backend(onnx_path, threads=1).backend == "onnxruntime"
    assert len(json.loads(cache.read_text())["choices"]) == 2


def test_a_missing_backend_is_not_a_candidate(model, cache, monkeypatch):
    _, onnx_path = model
    row = Backend("fancy", (".onnx",), "ssdlite_no_such_runtime", "fancy", "nowhere:Runner", "test row")
    monkeypatch.setitem(BACKENDS, "fancy", row)
    assert "fancy" not in candidates(onnx_path) and "onnxruntime" in candidates(onnx_path)
    real = backends.installed
    monkeypatch.setattr(backends, "installed", lambda name: name == "onnxruntime" or (name != "openvino" and real(name)))
    monkeypatch.setattr(auto, "_measure", _no_measuring)
    choice = choose_backend(onnx_path, threads=1)
    assert choice.backend == "onnxruntime" and "only installed" in choice.reason and not cache.exists()


def test_a_runtime_that_fails_is_dropped(model, cache, monkeypatch):
    _, onnx_path = model
    row = Backend("broken", (".onnx",), None, None, "ssdlite.deploy.auto:Choice", "a runner that cannot load the file")
    monkeypatch.setitem(BACKENDS, "broken", row)
    choice = choose_backend(onnx_path, threads=1, runs=4)
    assert choice.backend != "broken" and "broken failed" in choice.reason and "broken" not in choice.timings_ms


def test_a_checkpoint_is_torch_without_measuring(model, cache, monkeypatch, capsys, photo_set):
    ckpt, onnx_path = model
    monkeypatch.setattr(auto, "_measure", _no_measuring)
    choice = choose_backend(ckpt)
    assert choice.backend == "torch" and "export" in choice.reason
    det = Detector.from_checkpoint(ckpt, backend="auto", threads=1)
    assert det.backend == "torch" and det.precision == "fp32" and not cache.exists()
    assert run_tool("detect", ["--checkpoint", ckpt, "--source", photo_set.pick("dog.jpg")[0], "--backend", "auto",
                               "--threads", "1", "--json", model[1].parent / "dog.jsonl"]) == 0
    assert "(torch fp32; auto: a checkpoint runs on torch" in capsys.readouterr().err
