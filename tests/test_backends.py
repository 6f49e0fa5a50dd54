"""The back-end table: defaults by file kind, refusals naming the file, a missing extra in one line."""

from __future__ import annotations

import pytest

from ssdlite.deploy import backends
from ssdlite.deploy.backends import BACKENDS, Backend, MissingExtra, check_backend, default_backend, make_runner, require


def test_default_backend_follows_the_file_kind() -> None:
    assert default_backend("m.onnx") == "onnxruntime"
    assert default_backend("M.ONNX") == "onnxruntime"
    assert default_backend("best.pt") == "torch"
    assert default_backend("weights.ckpt") == "torch"  # any file no other row claims is a checkpoint


def test_wrong_file_for_a_backend_names_the_file_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"backend 'tensorrt' is not one of \['torch', 'onnxruntime'"):
        check_backend("tensorrt", "m.onnx")
    with pytest.raises(ValueError, match=r"onnxruntime back end runs \.onnx files, not best\.pt: use backend 'torch'; export it"):
        check_backend("onnxruntime", "best.pt")
    with pytest.raises(ValueError, match=r"torch back end runs checkpoint \(\.pt\) files, not m\.onnx: use backend 'onnxruntime'"):
        check_backend("torch", "m.onnx")


def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch) -> None:
    with pytest.raises(MissingExtra) as e:
        require("ssdlite_no_such_runtime", "fancy", "the fancy back end")
    msg = str(e.value)
    assert "\n" not in msg
    assert "the fancy back end needs the Python package 'ssdlite_no_such_runtime'" in msg
    assert "pip install 'ssdlite[fancy]'" in msg
    row = Backend("fancy", (".fancy",), "ssdlite_no_such_runtime", "fancy", "nowhere:Runner", "test row")
    monkeypatch.setitem(BACKENDS, "fancy", row)
    assert not backends.installed("fancy")
    with pytest.raises(MissingExtra, match=r"pip install 'ssdlite\[fancy\]'"):
        make_runner("fancy", "m.fancy")


def test_the_cli_error_for_a_missing_extra_is_one_line(monkeypatch, tmp_path, capsys) -> None:
    from ssdlite.apps.cli import main

    model = tmp_path / "m.fancy"
    model.write_bytes(b"x")
    row = Backend("fancy", (".fancy",), "ssdlite_no_such_runtime", "fancy", "nowhere:Runner", "test row")
    monkeypatch.setitem(BACKENDS, "fancy", row)
    import cv2
    import numpy as np

    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    status = main(["detect", "--checkpoint", str(model), "--source", str(tmp_path / "frames"), "--backend", "fancy"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert err[-1].startswith("ssdlite detect: error: the fancy back end needs the Python package 'ssdlite_no_such_runtime'")
    assert "pip install 'ssdlite[fancy]'" in err[-1]


def test_export_format_from_the_flag_or_the_suffix() -> None:
    from ssdlite.deploy.formats import EXPORT_FORMATS, format_for

    assert format_for(None, "m.onnx").name == "onnx"
    assert format_for(None, "m.unknown").name == "onnx"
    assert format_for("onnx", "m.bin").name == "onnx"
    with pytest.raises(ValueError, match=r"export format 'tensorrt' is not one of \['onnx'"):
        format_for("tensorrt", "m.engine")
    for f in EXPORT_FORMATS.values():  # every row's verifying back end exists
        assert f.backend is None or f.backend in BACKENDS
