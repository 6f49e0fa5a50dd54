"""Weights by name, without a network: the downloader against a local HTTP server on 127.0.0.1
(partial and interrupted transfers, wrong hashes, 404, no server at all), the by-name paths against
generated files placed in a temporary cache, and the real registry rows checked for shape."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest
import torch

import backbones
from ssdlite.apps.cli import main as cli_main
from ssdlite.config import from_dict
from ssdlite.weights import registry
from ssdlite.weights.download import WeightsHashError, WeightsUnavailable, cache_dir, download, fetch


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        cut = self.path.startswith("/cut/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 3] if cut else body)  # /cut/: the connection drops a third of the way

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    _Handler.files, _Handler.requests = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _entry(url: str, data: bytes, **kw) -> registry.WeightsEntry:
    base = dict(name="test_weights", kind="backbone", url=url, sha256=hashlib.sha256(data).hexdigest(), source="test",
                license="test", fits=("mobilenet_v3_small", 1.0), accuracy="-", size_mb=0.0)
    return registry.WeightsEntry(**{**base, **kw})


def _no_temp_left(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")] if folder.exists() else True


def test_download_verifies_and_second_use_reads_the_cache(server, tmp_path):
    url, handler = server
    data = bytes(range(256)) * 4000
    handler.files["w-0123abcd.pth"] = data
    entry = _entry(f"{url}/w-0123abcd.pth", data)
    path = fetch(entry, tmp_path, progress=False)
    assert path == tmp_path / "w-0123abcd.pth" and path.read_bytes() == data and len(handler.requests) == 1
    assert fetch(entry, tmp_path, progress=False) == path and len(handler.requests) == 1  # no network the second time
    prefix = dataclasses.replace(entry, sha256=entry.sha256[:8])  # torch.hub-style prefix in the name
    assert fetch(prefix, tmp_path, progress=False) == path


def test_wrong_hash_deletes_and_names_both_hashes(server, tmp_path):
    url, handler = server
    handler.files["w.pth"] = b"not the published file"
    entry = _entry(f"{url}/w.pth", b"the published file")
    with pytest.raises(WeightsHashError) as e:
        fetch(entry, tmp_path, progress=False)
    got = hashlib.sha256(b"not the published file").hexdigest()
    assert str(tmp_path / "w.pth") in str(e.value) and got in str(e.value) and entry.sha256 in str(e.value)
    assert not (tmp_path / "w.pth").exists()
    _no_temp_left(tmp_path)


def test_cached_file_that_changed_is_deleted_and_refused(server, tmp_path):
    url, handler = server
    handler.files["w.pth"] = b"good bytes"
    entry = _entry(f"{url}/w.pth", b"good bytes")
    path = fetch(entry, tmp_path, progress=False)
    path.write_bytes(b"bit rot")
    with pytest.raises(WeightsHashError, match="does not match the published"):
        fetch(entry, tmp_path, progress=False)
    assert not path.exists()


def test_interrupted_transfer_keeps_nothing(server, tmp_path):
    url, handler = server
    data = b"x" * 300_000
    handler.files["w.pth"] = data
    entry = _entry(f"{url}/cut/w.pth", data)
    with pytest.raises(WeightsUnavailable, match=r"(interrupted|stopped at \d+ of 300000 bytes)"):
        fetch(entry, tmp_path, progress=False)
    assert not (tmp_path / "w.pth").exists()
    _no_temp_left(tmp_path)


def test_404_and_no_server_are_one_line_with_exit_status_1(server, tmp_path, monkeypatch, capsys):
    url, _ = server
    with pytest.raises(WeightsUnavailable, match=r"HTTP 404 .*place the file by hand at .*missing\.pth"):
        download(f"{url}/missing.pth", tmp_path / "missing.pth", "0" * 64, progress=False)
    with pytest.raises(ValueError, match="without a published SHA-256"):
        download(f"{url}/missing.pth", tmp_path / "missing.pth", "", progress=False)
    # no network: a port nothing listens on; the registry row points there
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/w-0123abcd.pth"
    entry = _entry(dead, b"x", kind="detector", name="ssdlite320_mobilenet_v3_large_coco", fits=("torchvision_ssdlite",))
    monkeypatch.setitem(registry._BY_NAME, entry.name, entry)
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "frame.png"), np.zeros((32, 32, 3), np.uint8))
    code = cli_main(["detect", "--checkpoint", "coco", "--source", str(tmp_path / "frame.png"), "--weights-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert dead in err and str(tmp_path / "c" / "w-0123abcd.pth") in err and "Traceback" not in err


def test_cache_dir_follows_torch_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert cache_dir() == tmp_path / "th" / "hub" / "checkpoints"
    assert cache_dir(tmp_path / "mine") == tmp_path / "mine"


def test_registry_rows_have_the_right_shape():
    names = [w.name for w in registry.WEIGHTS]
    assert len(names) == len(set(names)) and registry.lookup("coco").kind == "detector"
    for w in registry.WEIGHTS:
        assert w.url.startswith("https://") and re.fullmatch(r"[0-9a-f]{8}([0-9a-f]{56})?", w.sha256), w.name
        if "download.pytorch.org" in w.url:  # torchvision puts the hash prefix in the file name
            assert w.filename.endswith(f"-{w.sha256[:8]}.pth"), w.name
        if w.kind == "backbone":
            assert w.fits[0] in backbones.list_backbones() and w.fits[1] == 1.0
        else:
            assert w.kind == "detector" and w.fits == ("torchvision_ssdlite",)
        assert w.layout in ("ours", "in_order") and w.source and w.license and w.accuracy
    for name, row in registry.IMAGENET.items():
        assert registry.imagenet_for(name, 1.0).name == row
    with pytest.raises(ValueError, match="no published ImageNet weights for mobilenet_v3_small at width_mult=0.5"):
        registry.imagenet_for("mobilenet_v3_small", 0.5)


def _place(monkeypatch, cache: Path, name: str, data_path: Path, **changes) -> registry.WeightsEntry:
    """Put a generated file in the cache under registry row ``name`` (its hash patched to the file's)."""
    row = registry._BY_NAME[name]
    row = dataclasses.replace(row, sha256=hashlib.sha256(data_path.read_bytes()).hexdigest(), **changes)
    monkeypatch.setitem(registry._BY_NAME, name, row)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / row.filename).write_bytes(data_path.read_bytes())
    return row


def test_imagenet_by_name_loads_the_file_and_a_reduced_tail_reports_scratch(monkeypatch, tmp_path, caplog):
    import torchvision

    src = tmp_path / "tv.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), src)
    _place(monkeypatch, tmp_path / "cache", "mobilenet_v3_small_imagenet_v1", src)
    from ssdlite.model import build_model

    cfg = from_dict({"model": {"backbone": {"name": "mobilenet_v3_small", "weights": "imagenet"}, "num_classes": 2}})
    model = build_model(cfg, weights_dir=tmp_path / "cache")
    ref = torch.load(src, weights_only=True)
    assert torch.equal(model.backbone.state_dict()["features.4.block.0.0.weight"], ref["features.4.block.0.0.weight"])
    reduced = from_dict({"model": {"backbone": {"name": "mobilenet_v3_small", "weights": "mobilenet_v3_small_imagenet_v1",
                                                "reduced_tail": True}, "num_classes": 2}})
    with caplog.at_level("WARNING", logger="ssdlite.weights"):
        model = build_model(reduced, weights_dir=tmp_path / "cache")
    assert torch.equal(model.backbone.state_dict()["features.4.block.0.0.weight"], ref["features.4.block.0.0.weight"])
    report = [r.getMessage() for r in caplog.records]
    assert len(report) == 1 and "start from scratch (the reduced tail has no ImageNet weights): features.9.block.3, features.10.block.0" in report[0]
    with pytest.raises(ValueError, match="fits mobilenet_v3_small at width_mult=1.0, not mobilenet_v2"):
        build_model(from_dict({"model": {"backbone": {"name": "mobilenet_v2", "weights": "mobilenet_v3_small_imagenet_v1"}}}),
                    weights_dir=tmp_path / "cache")


def test_mobilenet_v1_file_of_another_naming_is_mapped_in_order(monkeypatch, tmp_path):
    ours = backbones.create("mobilenet_v1", num_classes=1001)
    torch.manual_seed(1)
    for p in ours.parameters():
        p.data.normal_()
    hf = {}
    for i, (k, v) in enumerate(ours.state_dict().items()):  # the HF transformers port names them otherwise
        if not k.startswith("classifier"):
            hf[f"mobilenet_v1.layer_{i:03d}.{k.rsplit('.', 1)[-1]}"] = v.clone()
    hf["classifier.weight"], hf["classifier.bias"] = torch.zeros(1001, 1024), torch.zeros(1001)
    src = tmp_path / "hf.bin"
    torch.save(hf, src)
    _place(monkeypatch, tmp_path / "cache", "mobilenet_v1_imagenet_google", src)
    from ssdlite.model import build_model

    model = build_model(from_dict({"model": {"backbone": {"name": "mobilenet_v1", "weights": "imagenet"}}}),
                        weights_dir=tmp_path / "cache")
    want = {k: v for k, v in ours.state_dict().items() if k in model.backbone.state_dict()}
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in want.items())


def test_detector_by_name_is_converted_once(monkeypatch, tmp_path):
    import torchvision

    src = tmp_path / "tv_ssdlite.pth"
    torch.manual_seed(0)
    tv = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    torch.save(tv.state_dict(), src)
    row = _place(monkeypatch, tmp_path / "cache", "ssdlite320_mobilenet_v3_large_coco", src)
    from ssdlite.deploy.detector import Detector

    det = Detector.from_checkpoint("coco", threads=1, weights_dir=tmp_path / "cache")
    converted = tmp_path / "cache" / row.filename.replace(".pth", ".ssdlite.pt")
    assert converted.is_file() and det.cfg.model.num_classes == 90 and det.cfg.model.anchors.layout == "torchvision"
    stamp = converted.stat().st_mtime_ns
    Detector.from_checkpoint("ssdlite320_mobilenet_v3_large_coco", threads=1, weights_dir=tmp_path / "cache")
    assert converted.stat().st_mtime_ns == stamp  # read, not converted again
    with pytest.raises(ValueError, match="names backbone weights .* not a detector"):
        Detector.from_checkpoint("mobilenet_v2_imagenet_v1", weights_dir=tmp_path / "cache")
