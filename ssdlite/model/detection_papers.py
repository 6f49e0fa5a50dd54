"""The MobileNet papers' COCO detection rows, and ours beside them (params, MAdds, head-only counts).

Every detection row of the MobileNetV1 paper (Table 13), the MobileNetV2 paper (Tables 5 and 6) and
the SSDLite rows of the MobileNetV3 paper (Table 6) is kept as printed (strings, so that their
precision is known); a row we can build names its config (``configs/<stem>.yaml``). "Head" means the
prediction layers the MobileNetV2 paper's Table 5 counts: the extra blocks and the box / class
predictors (everything but the backbone). :func:`compare_papers` counts every config once and sets
each published figure beside ours (within ``DETECTION_TOL``, the printed precision allowed for, as
:func:`ssdlite.model.complexity.check_figure` rules); :func:`format_papers` prints the table and its
closing notes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["DetectionRow", "DETECTION_ROWS", "Measured", "PaperComparison", "measure_config", "compare_papers",
           "format_papers", "V1_PAPER", "V2_PAPER", "V3_PAPER"]

V1_PAPER = "MobileNetV1 paper (arXiv 1704.04861)"
V2_PAPER = "MobileNetV2 paper (arXiv 1801.04381)"
V3_PAPER = "MobileNetV3 paper (arXiv 1905.02244)"
PHONE = "Pixel 1 phone CPU, one large core, TF-Lite"  # the latency columns of V2 Table 6 and V3 Table 6


@dataclass(frozen=True)
class DetectionRow:
    """One published COCO detection row, figures as printed (None: not in the table).

    ``params_m`` / ``madds_b``: the whole detector; ``head_params_m`` / ``head_madds_b``: the
    prediction layers only (Table 5); ``latency_ms``: on a phone (``PHONE``); ``config``: the stem
    of our config that builds it, or None when its backbone or framework is not in ssdlite.
    """

    paper: str
    table: str
    label: str
    config: str | None = None
    params_m: str | None = None
    madds_b: str | None = None
    head_params_m: str | None = None
    head_madds_b: str | None = None
    map: str | None = None
    latency_ms: str | None = None
    note: str = ""


_T5_LITE_NOTE = (
    "0.35B is 2.0x ours (0.178B) and 2x what the paper's own Table 6 implies (0.8B - MobileNetV2's 0.61B at 320 = "
    "0.19B); the SSD row beside it (1.25B) counts multiply-adds as we do. 0.35B is what these layers give with "
    "multiplies and adds counted separately (2 x 0.178B = 0.356B)"
)

DETECTION_ROWS: tuple[DetectionRow, ...] = (
    # MobileNetV1 paper, Table 13: COCO, SSD and Faster-RCNN, mAP / Billion Mult-Adds / Million Parameters
    DetectionRow(V1_PAPER, "Table 13", "SSD 300 deeplab-VGG", None, "33.1", "34.9", map="21.1"),
    DetectionRow(V1_PAPER, "Table 13", "SSD 300 Inception V2", None, "13.7", "3.8", map="22.0"),
    DetectionRow(V1_PAPER, "Table 13", "SSD 300 MobileNet", "ssd300_mobilenet_v1", "6.8", "1.2", map="19.3"),
    DetectionRow(V1_PAPER, "Table 13", "Faster-RCNN 300 VGG", None, "138.5", "64.3", map="22.9"),
    DetectionRow(V1_PAPER, "Table 13", "Faster-RCNN 300 Inception V2", None, "13.3", "118.2", map="15.4"),
    DetectionRow(V1_PAPER, "Table 13", "Faster-RCNN 300 MobileNet", None, "6.1", "25.2", map="16.4"),
    DetectionRow(V1_PAPER, "Table 13", "Faster-RCNN 600 VGG", None, "138.5", "149.6", map="25.7"),
    DetectionRow(V1_PAPER, "Table 13", "Faster-RCNN 600 Inception V2", None, "13.3", "129.6", map="21.9"),
    DetectionRow(V1_PAPER, "Table 13", "Faster-RCNN 600 MobileNet", None, "6.1", "30.5", map="19.8"),
    # MobileNetV2 paper, Table 5: the prediction layers alone, on MobileNetV2, COCO's 80 classes
    DetectionRow(V2_PAPER, "Table 5", "SSD (prediction layers)", "ssd320_mobilenet_v2", head_params_m="14.8", head_madds_b="1.25"),
    DetectionRow(V2_PAPER, "Table 5", "SSDLite (prediction layers)", "ssdlite320_mobilenet_v2", head_params_m="2.1",
                 head_madds_b="0.35", note=_T5_LITE_NOTE),
    # MobileNetV2 paper, Table 6: COCO test-dev, mAP / Params / MAdd / CPU
    DetectionRow(V2_PAPER, "Table 6", "SSD300 (VGG)", None, "36.1", "35.2", map="23.2"),
    DetectionRow(V2_PAPER, "Table 6", "SSD512 (VGG)", None, "36.1", "99.5", map="26.8"),
    DetectionRow(V2_PAPER, "Table 6", "YOLOv2", None, "50.7", "17.5", map="21.6"),
    DetectionRow(V2_PAPER, "Table 6", "MNet V1 + SSDLite", "ssdlite320_mobilenet_v1", "5.1", "1.3", map="22.2", latency_ms="270"),
    DetectionRow(V2_PAPER, "Table 6", "MNet V2 + SSDLite", "ssdlite320_mobilenet_v2", "4.3", "0.8", map="22.1", latency_ms="200"),
    # MobileNetV3 paper, Table 6: SSDLite at 320 on COCO, mAP / latency / params / MAdds
    DetectionRow(V3_PAPER, "Table 6", "V1 + SSDLite", "ssdlite320_mobilenet_v1", "5.1", "1.3", map="22.2", latency_ms="228"),
    DetectionRow(V3_PAPER, "Table 6", "V2 + SSDLite", "ssdlite320_mobilenet_v2", "4.3", "0.80", map="22.1", latency_ms="162"),
    DetectionRow(V3_PAPER, "Table 6", "V3-Large + SSDLite", "ssdlite320_mobilenet_v3_large", "4.97", "0.62", map="22.0", latency_ms="137"),
    DetectionRow(V3_PAPER, "Table 6", "V3-Large reduced + SSDLite", "ssdlite320_mobilenet_v3_large_reduced", "3.22", "0.51",
                 map="22.0", latency_ms="119"),
    DetectionRow(V3_PAPER, "Table 6", "V3-Small + SSDLite", "ssdlite320_mobilenet_v3_small", "2.49", "0.21", map="16.1", latency_ms="52"),
    DetectionRow(V3_PAPER, "Table 6", "V3-Small reduced + SSDLite", "ssdlite320_mobilenet_v3_small_reduced", "1.77", "0.16",
                 map="16.0", latency_ms="43"),
)


@dataclass(frozen=True)
class Measured:
    """Our counts of one config: the whole detector and its head (extras + predictors)."""

    config: str
    input_size: tuple[int, int]
    params: int
    macs: int
    head_params: int
    head_macs: int
    num_classes: int


def measure_config(path: str | Path, overrides: Sequence[str] = ()) -> Measured:
    """Build the detector of a config and count it whole and without its backbone (the head)."""
    from ssdlite.config import load_config
    from ssdlite.model.complexity import count_head, count_macs, count_params
    from ssdlite.model.network import build_model

    cfg = load_config(path, overrides)
    model = build_model(cfg, load_backbone_weights=False)
    size = tuple(cfg.model.input_size)
    head_params, head_macs = count_head(model, size)
    return Measured(Path(path).stem, size, count_params(model), count_macs(model, size), head_params, head_macs,
                    cfg.model.num_classes)


@dataclass(frozen=True)
class PaperComparison:
    """A published row beside ours (``measured`` None: not buildable here). ``*_status``: ok / ok* / OUT / -."""

    row: DetectionRow
    measured: Measured | None
    params_status: str = "-"
    madds_status: str = "-"
    head_params_status: str = "-"
    head_madds_status: str = "-"

    @property
    def ok(self) -> bool:
        return "OUT" not in (self.params_status, self.madds_status, self.head_params_status, self.head_madds_status)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ok": self.ok}


def compare_papers(config_dir: str | Path, rows: Sequence[DetectionRow] | None = None,
                   overrides: Sequence[str] = ()) -> list[PaperComparison]:
    """Every row (default: :data:`DETECTION_ROWS`) beside our count of its config (each built and counted once)."""
    from ssdlite.model.complexity import DETECTION_TOL, check_figure

    cache: dict[str, Measured] = {}
    out = []
    for row in DETECTION_ROWS if rows is None else rows:
        path = Path(config_dir) / f"{row.config}.yaml" if row.config else None
        if path is None or not path.is_file():
            out.append(PaperComparison(row, None))
            continue
        if row.config not in cache:
            cache[row.config] = measure_config(path, overrides)
        m = cache[row.config]

        def status(ours: int, printed: str | None, scale: float) -> str:
            return "-" if printed is None else check_figure(ours, printed, scale, DETECTION_TOL)

        out.append(PaperComparison(
            row, m, status(m.params, row.params_m, 1e6), status(m.macs, row.madds_b, 1e9),
            status(m.head_params, row.head_params_m, 1e6), status(m.head_macs, row.head_madds_b, 1e9),
        ))
    return out


def _pair(ours: float | None, printed: str | None, digits: int) -> str:
    """``"ours / printed"``, ``-`` for a missing side."""
    return f"{'-' if ours is None else f'{ours:.{digits}f}'} / {printed or '-'}"


def format_papers(comparisons: Sequence[PaperComparison]) -> str:
    """A text table (ours / paper for params M, MAdds B and the head's, status, mAP, phone ms) + notes."""
    from ssdlite.model.complexity import format_table

    header = ["paper, table", "row", "config", "params M", "", "MAdds B", "", "head params M", "", "head MAdds B", "",
              "mAP", "phone ms"]
    table, notes = [], []
    for c in comparisons:
        r, m = c.row, c.measured
        if r.note or (r.config and m is None):
            notes.append(f"[{len(notes) + 1}] {r.label}: {r.note or f'configs/{r.config}.yaml is absent'}")
        tag = f" [{len(notes)}]" if notes and (r.note or (r.config and m is None)) else ""
        table.append([
            f"{r.paper.split(' (')[0]} {r.table}", r.label + tag, m.config if m else "-",
            _pair(m and m.params / 1e6, r.params_m, 2), c.params_status,
            _pair(m and m.macs / 1e9, r.madds_b, 3), c.madds_status,
            _pair(m and m.head_params / 1e6, r.head_params_m, 2), c.head_params_status,
            _pair(m and m.head_macs / 1e9, r.head_madds_b, 3), c.head_madds_status,
            r.map or "-", r.latency_ms or "-",
        ])
    return "\n".join([format_table(header, table), *notes])
