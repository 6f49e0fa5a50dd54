"""ssdlite.model.complexity: known-answer counts, pinned rows of the papers' tables, the two tools."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest
import torch
import torchvision
from torch import nn

import backbones
from ssdlite.model import complexity
from ssdlite.model.complexity import (
    CLASSIFICATION_TABLES,
    SSDLITE320_TABLE6,
    check_figure,
    classification_rows,
    count_macs,
    count_params,
)
from ssdlite._paths import REPO_ROOT

PAPER_CONFIGS = sorted((REPO_ROOT / "configs").glob("ssdlite320_*.yaml"))


def test_count_macs_known_answer():
    # conv 3->8 3x3 on 10x10 (padding 1): 8*3*9*100 = 21600; linear 8->4: 32; BN/ReLU/pool are not multiply-adds
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )
    model.train()
    assert count_macs(model, (10, 10)) == 21600 + 32
    assert model.training  # the mode is restored
    # stride 2 on 10x12 -> 5x6 outputs; depthwise: 1 input channel per output channel
    assert count_macs(nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4), (10, 12), in_channels=4) == 4 * 9 * 30
    # a bias-free linear runs as aten.mm: 12 inputs x 5 outputs
    assert count_macs(nn.Sequential(nn.Flatten(), nn.Linear(12, 5, bias=False)), (2, 2), in_channels=3) == 60


def test_count_params_known_answer_and_torchvision():
    assert count_params(nn.Conv2d(3, 8, 3)) == 8 * 27 + 8
    for name in ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"):
        ours = backbones.create(name, num_classes=1000)
        assert count_params(ours) == count_params(getattr(torchvision.models, name)(weights=None)), name


@pytest.mark.parametrize(
    "ours,printed,scale,tol,expected",
    [
        (300.77e6, "300", 1e6, 0.05, "ok"),
        (11.93e6, "11", 1e6, 0.05, "ok*"),  # the TF-slim table truncates to whole millions
        (30.21e6, "34", 1e6, 0.05, "OUT"),
        (5.483e6, "5.4", 1e6, 0.03, "ok"),
        (2.41e6, "2.49", 1e6, 0.03, "OUT"),
        (0.789e9, "0.80", 1e9, 0.05, "ok"),
    ],
)
def test_check_figure(ours, printed, scale, tol, expected):
    assert check_figure(ours, printed, scale, tol) == expected


PINNED = {
    # (backbone, alpha, resolution): (our params, our MACs) in millions, to 0.01
    ("mobilenet_v2", 1.0, 224): (3.50, 300.77),
    ("mobilenet_v2", 0.35, 96): (1.68, 11.93),
    ("mobilenet_v1", 1.0, 224): (4.23, 568.74),
    ("mobilenet_v1", 0.5, 160): (1.33, 76.52),
    ("mobilenet_v3_large", 1.0, 224): (5.48, 216.59),
    ("mobilenet_v3_small", 1.0, 224): (2.54, 56.51),
}


def test_pinned_rows_within_tolerance_of_the_published_tables():
    table = [p for p in CLASSIFICATION_TABLES if (p.backbone, p.width_mult, p.resolution) in PINNED]
    assert len(table) == len(PINNED) + 2  # V1 1.0/224 and 0.5/160 appear in TF-slim's table and the paper's
    for row, pub in zip(classification_rows(table), table):
        params, macs = PINNED[(pub.backbone, pub.width_mult, pub.resolution)]
        assert row.params / 1e6 == pytest.approx(params, abs=0.006), row.label
        assert row.macs / 1e6 == pytest.approx(macs, abs=0.006), row.label
        assert abs(row.params_ratio - 1) <= complexity.PARAMS_TOL, row.label
        assert row.ok, row
        if (pub.backbone, pub.width_mult, pub.resolution) != ("mobilenet_v2", 0.35, 96):
            assert abs(row.macs_ratio - 1) <= complexity.MACS_TOL, row.label


def test_published_tables_are_complete():
    v2 = [p for p in CLASSIFICATION_TABLES if p.backbone == "mobilenet_v2"]
    assert len(v2) == 22 and {(p.width_mult, p.resolution) for p in v2} >= {(1.4, 224), (1.3, 224), (0.35, 96)}
    assert sum(p.source.startswith("MobileNetV1 (TF-slim") for p in CLASSIFICATION_TABLES) == 16
    assert {p.backbone for p in CLASSIFICATION_TABLES} == set(backbones.list_backbones()[:4])
    if PAPER_CONFIGS:
        assert set(SSDLITE320_TABLE6) == {p.stem for p in PAPER_CONFIGS}


def test_backbone_rows_and_tool(capsys):
    from ssdlite.tools import backbones_table

    assert backbones_table.main(Namespace(size=96, json_out=None, threads=None)) == 0
    out = capsys.readouterr().out
    for name in backbones.list_backbones():
        assert name in out
    assert "672, 480" in out and "288, 288" in out
    rows = {(r["name"], r["reduced_tail"]): r for r in complexity.backbone_rows((96, 96))}
    # the stride-8 tap: V1 conv5, V2's first 64-channel block expansion, V3's C3 expansion
    assert [rows[k]["stride8_channels"] for k in [("mobilenet_v1", False), ("mobilenet_v2", False),
            ("mobilenet_v3_large", True), ("mobilenet_v3_small", False)]] == [256, 192, 240, 96]


def test_complexity_tool_detection_rows(tmp_path, capsys):
    pytest.importorskip("ssdlite.model")
    config = next((p for p in PAPER_CONFIGS if p.stem == "ssdlite320_mobilenet_v3_small_reduced"), None)
    if config is None:
        pytest.skip("configs/ssdlite320_mobilenet_v3_small_reduced.yaml is absent")
    from ssdlite.tools import complexity as tool

    out_json = tmp_path / "rows.json"
    args = Namespace(configs=[str(config)], classification=False, overrides=[], json_out=str(out_json), strict=False, threads=None)
    assert tool.main(args) == 0
    assert "ssdlite320_mobilenet_v3_small_reduced" in capsys.readouterr().out
    (row,) = json.loads(out_json.read_text())["detection"]
    assert (row["published_params"], row["published_macs"]) == SSDLITE320_TABLE6[config.stem]
    assert row["macs_unit"] == 1e9 and 0.5 < row["macs_ratio"] < 2 and 0.5 < row["params_ratio"] < 2


def test_complexity_tool_needs_something_to_do():
    from ssdlite.tools import complexity as tool

    with pytest.raises(ValueError, match="--classification"):
        tool.main(Namespace(configs=[], classification=False, overrides=[], json_out=None, strict=False, threads=None))


def test_format_rows_shows_ratios_and_notes():
    (pub,) = [p for p in CLASSIFICATION_TABLES if (p.backbone, p.width_mult, p.resolution) == ("mobilenet_v1", 0.25, 192)]
    row = complexity.compare("v1 0.25/192", pub.source, backbones.create("mobilenet_v1", width_mult=0.25, num_classes=1000),
                             (192, 192), (pub.params_m, pub.macs_m), note=pub.note)
    text = complexity.format_rows([row])
    assert "OUT [1]" in text and "[1] v1 0.25/192: printed 34M" in text
    assert f"{row.macs_ratio:.3f}" in text
    assert torch.isfinite(torch.tensor(row.params_ratio))
