"""model.head: ssd (regular convolutions) beside ssdlite: the layers TF builds, the papers' counts
(MobileNetV2 Table 5, MobileNetV1 Table 13), training on the shapes data, the paper benchmark's table.
Export parity and repeated-batch learning of the SSD configs run in test_export.py / test_model.py."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest
import torch
from torch import nn

import ssdlite
from helpers import CONFIGS, SSD_CONFIGS, ShapesData
from ssdlite.config import ConfigError, from_dict, load_config
from ssdlite.config.schema import _CHOICES
from ssdlite.model.complexity import DETECTION_TOL, count_head, count_params
from ssdlite.model.detection_papers import DETECTION_ROWS, compare_papers, format_papers
from ssdlite.model.network import HEADS


def test_the_head_choices_agree_and_bad_values_name_the_key():
    assert _CHOICES["model.head"] == HEADS
    assert [p.stem for p in SSD_CONFIGS] == ["ssd300_mobilenet_v1", "ssd320_mobilenet_v2"]
    with pytest.raises(ConfigError, match=r"model.head='yolo' is not allowed"):
        from_dict({"model": {"head": "yolo"}})
    with pytest.raises(ConfigError, match=r"model.predictor_kernel=5 is out of range: must be 1 or 3"):
        from_dict({"model": {"predictor_kernel": 5}})
    assert load_config(CONFIGS / "ssdlite320_mobilenet_v2.yaml").model.head == "ssdlite"
    assert from_dict({}).model.head == "ssdlite"  # configs and checkpoints without the key: SSDLite, as before


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_ssd_layers_are_tf_regular_convolutions():
    """TF multi_resolution_feature_maps (use_depthwise false): 1x1 to d/2, 3x3 stride 2 to d; the
    convolutional box predictor: one k x k conv with bias per map and output."""
    v1 = ssdlite.build_model(load_config(CONFIGS / "ssd300_mobilenet_v1.yaml"), load_backbone_weights=False)
    assert v1.head == "ssd" and v1.predictor_kernel == 1
    assert v1.feature_sizes((300, 300)) == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert v1.map_channels == [512, 1024, 512, 256, 256, 128]
    first = _convs(v1.extras[0])
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.groups) for c in first] == [
        (1024, 256, (1, 1), (1, 1), 1), (256, 512, (3, 3), (2, 2), 1)]
    for heads, per_box in ((v1.cls_heads, 81), (v1.box_heads, 4)):
        for head, c, a in zip(heads, v1.map_channels, v1.num_anchors):
            (conv,) = _convs(head)
            assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.bias is not None) == (c, a * per_box, (1, 1), True)
    v2 = ssdlite.build_model(load_config(CONFIGS / "ssd320_mobilenet_v2.yaml"), load_backbone_weights=False)
    assert all(c.groups == 1 for c in _convs(v2.extras) + _convs(v2.cls_heads) + _convs(v2.box_heads))
    assert {c.kernel_size for c in _convs(v2.cls_heads)} == {(3, 3)}
    lite = ssdlite.build_model(load_config(CONFIGS / "ssdlite320_mobilenet_v2.yaml"), load_backbone_weights=False)
    assert lite.head == "ssdlite" and all(len(_convs(b)) == 3 and _convs(b)[1].groups > 1 for b in lite.extras)
    # the same maps, anchors and outputs: only the prediction layers differ
    assert torch.equal(v2.anchors(), lite.anchors()) and v2.map_channels == lite.map_channels


def test_count_head_is_the_layers_outside_the_backbone():
    model = ssdlite.build_model(load_config(CONFIGS / "ssd320_mobilenet_v2.yaml",
                                            ["model.num_classes=3", "model.input_size=[64,64]"]), load_backbone_weights=False)
    params, _ = count_head(model, (64, 64))
    assert params == sum(count_params(m) for m in (model.extras, model.cls_heads, model.box_heads))


def test_table5_and_table13_rows_beside_ours():
    rows = [r for r in DETECTION_ROWS if r.config in ("ssd320_mobilenet_v2", "ssd300_mobilenet_v1")]
    (t13, t5) = compare_papers(CONFIGS, rows)
    # MobileNetV1 Table 13, SSD 300 MobileNet: 6.8M params, 1.2B MAdds (ours with 80 + 1 classes)
    assert t13.measured.params / 1e6 == pytest.approx(6.674, abs=0.001) and t13.measured.macs / 1e9 == pytest.approx(1.224, abs=0.001)
    # MobileNetV2 Table 5, SSD prediction layers: 14.8M params, 1.25B MAdds
    assert t5.measured.head_params / 1e6 == pytest.approx(14.777, abs=0.001)
    assert t5.measured.head_macs / 1e9 == pytest.approx(1.259, abs=0.001)
    for c in (t13, t5):
        assert c.ok, c
    assert abs(t13.measured.params / 6.8e6 - 1) < DETECTION_TOL and abs(t5.measured.head_macs / 1.25e9 - 1) < DETECTION_TOL
    text = format_papers([t13, t5])
    assert "6.67 / 6.8" in text and "14.78 / 14.8" in text and "1.259 / 1.25" in text


def test_every_published_row_is_listed_and_the_missed_figure_explained():
    tables = {(r.paper.split(" (")[0], r.table) for r in DETECTION_ROWS}
    assert tables == {("MobileNetV1 paper", "Table 13"), ("MobileNetV2 paper", "Table 5"), ("MobileNetV2 paper", "Table 6"),
                      ("MobileNetV3 paper", "Table 6")}
    assert sum(r.table == "Table 13" for r in DETECTION_ROWS) == 9
    assert {r.config for r in DETECTION_ROWS if r.config} == {p.stem for p in sorted(CONFIGS.glob("ssd*_*.yaml"))}
    lite = next(r for r in DETECTION_ROWS if r.label.startswith("SSDLite (prediction"))
    (c,) = compare_papers(CONFIGS, [lite])
    assert c.head_params_status == "ok" and c.head_madds_status == "OUT"  # 0.178B against the printed 0.35B
    assert "2 x 0.178B" in format_papers([c])


def test_ssd_head_trains_on_the_shapes_data(shapes_data: ShapesData, tmp_path):
    from ssdlite.train.trainer import Trainer

    over = [
        "model.backbone.name=mobilenet_v1", "model.backbone.width_mult=0.25", "model.num_classes=4", "model.head=ssd",
        "model.predictor_kernel=1", "model.input_size=[128,128]", "model.extra_channels=[64,32,32,16]",
        f"data.train.images={shapes_data.train_images}", f"data.train.annotations={shapes_data.train_annotations}",
        f"data.val.images={shapes_data.val_images}", f"data.val.annotations={shapes_data.val_annotations}",
        "train.epochs=15", "train.batch_size=4", "train.lr=0.05", "train.reference_batch=4", "train.warmup_epochs=0.5",
        "train.workers=0", "train.seed=7", "train.channels_last=false", "data.augment=none",
    ]
    final = Trainer(from_dict({}, over), tmp_path / "ssd", progress=False).fit()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "ssd" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 15 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0] and "AP" in final
    det = ssdlite.Detector.from_checkpoint(str(tmp_path / "ssd" / "best.pt"))
    assert det.cfg.model.head == "ssd" and det.runner.model.head == "ssd"


def test_paper_benchmark_table_and_plot(tmp_path):
    from ssdlite.apps.bench import paper
    from ssdlite.model.detection_papers import Measured, PaperComparison

    rows = paper.buildable_rows(CONFIGS)
    assert len({r.config for r in rows}) == 8 and len(rows) >= 11
    fake = [PaperComparison(r, Measured(r.config, (320, 320), 5_000_000, 10**9, 2_000_000, 2 * 10**8, 80)) for r in rows]
    latency = {r.config: {"onnxruntime": 20.0} for r in rows}
    table = paper.markdown_table(fake, latency, ["onnxruntime"])
    assert table.count("\n") == len(rows) + 1 and "ONNX Runtime ms (FPS)" in table and "20.0 (50)" in table
    assert "| MobileNetV1 paper Table 13 | SSD 300 MobileNet | `ssd300_mobilenet_v1` | 5.00 / 6.8 | 1.000 / 1.2 |" in table
    paper.plot_map_vs_latency(fake, latency, ["onnxruntime"], tmp_path / "p.png", "t")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_complexity_tool_papers_flag(capsys, monkeypatch):
    from ssdlite.model import detection_papers
    from ssdlite.tools import complexity as tool

    few = tuple(r for r in DETECTION_ROWS if r.table == "Table 13")
    monkeypatch.setattr(detection_papers, "DETECTION_ROWS", few)
    args = Namespace(configs=[], classification=False, papers=True, overrides=[], json_out=None, strict=True, threads=None)
    assert tool.main(args) == 0
    out = capsys.readouterr().out
    assert "Faster-RCNN 600 MobileNet" in out and "6.67 / 6.8" in out and "9/9 rows within tolerance" in out
