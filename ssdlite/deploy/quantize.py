"""int8 post-training quantization of an exported ssdlite ONNX file (static QDQ, ONNX Runtime).

:func:`quantize_onnx` turns the fp32 file of :func:`ssdlite.deploy.export.export_onnx` into one
int8 file: ``QuantizeLinear`` / ``DequantizeLinear`` pairs around the convolutions
(``onnxruntime.quantization.quantize_static``, QDQ format), which ONNX Runtime fuses into int8
kernels and OpenVINO reads as an int8 model. The file keeps the export's metadata
(:mod:`ssdlite.deploy.onnx_format`) and adds ``ssdlite.quantization``: the recipe used (weights
per channel or per tensor, activation type, calibration method and image count, the nodes kept in
float) and whatever the caller measured (fp32 vs int8 AP).

A :class:`Recipe` is plain data; :data:`RECIPES` lists, per backbone family, the recipe chosen by
measurement first and the fallbacks to try after it (more of the network kept in float, another
calibration method). :func:`ssdlite.eval.int8.export_int8` runs them under an accuracy bound.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ssdlite.data.images import load_image
from ssdlite.data.yolo import IMAGE_SUFFIXES  # what OpenCV decodes

__all__ = ["Recipe", "RECIPES", "QUANT_KEY", "DEFAULT_CALIBRATION_COUNT", "CALIBRATIONS", "KEEP_FLOAT_ROLES", "family_of", "recipes_for",
           "calibration_images", "load_calibration", "float_nodes", "quantize_onnx", "read_quantization", "set_quantization", "spread"]

QUANT_KEY = "ssdlite.quantization"  # metadata key of the quantization record (JSON)
DEFAULT_CALIBRATION_COUNT = 200  # calibration images (evenly spaced over the folder / split when it has more)
CALIBRATIONS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("quint8", "qint8")
OP_SETS: dict[str, tuple[str, ...] | None] = {"all": None, "conv": ("Conv", "Add")}
# what can be kept in float, found in the graph by structure (not by layer names)
KEEP_FLOAT_ROLES = {
    "first_conv": "the first convolution (reads the normalized image)",
    "head_outputs": "the last convolution of every class / box predictor (the raw outputs)",
    "squeeze_excite": "MobileNetV3 squeeze-excite blocks (pool, two 1x1 convs, gate multiply)",
    "hardswish": "MobileNetV3 hard-swish activations, x * hardsigmoid(x) (and the convolutions feeding them)",
    "depthwise": "every depthwise (grouped) convolution",
}


@dataclass(frozen=True)
class Recipe:
    """One way to quantize: ``onnxruntime.quantization.quantize_static`` settings, as plain data.

    ``per_channel``: one weight scale per output channel (else one per tensor). ``calibration``:
    ``minmax``, ``entropy`` or ``percentile`` (``percentile`` of ``|x|``). ``activations``:
    ``quint8`` (asymmetric, ONNX Runtime's x86 choice) or ``qint8``; ``symmetric``: activation
    ranges centred on 0. Weights are always symmetric int8. ``keep_float``: roles of
    :data:`KEEP_FLOAT_ROLES` left in fp32. ``ops``: the operator types quantized, a key of
    :data:`OP_SETS` (``all``: every type ONNX Runtime can; ``conv``: convolutions and residual adds only).
    """

    name: str
    per_channel: bool = True
    calibration: str = "minmax"
    activations: str = "quint8"
    symmetric: bool = False
    keep_float: tuple[str, ...] = ()
    percentile: float = 99.999
    ops: str = "all"

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"recipe {self.name}: calibration {self.calibration!r} is not one of {list(CALIBRATIONS)}")
        if self.activations not in ACTIVATION_TYPES:
            raise ValueError(f"recipe {self.name}: activations {self.activations!r} is not one of {list(ACTIVATION_TYPES)}")
        if self.ops not in OP_SETS:
            raise ValueError(f"recipe {self.name}: ops {self.ops!r} is not one of {list(OP_SETS)}")
        unknown = [r for r in self.keep_float if r not in KEEP_FLOAT_ROLES]
        if unknown:
            raise ValueError(f"recipe {self.name}: keep_float {unknown} are not among {list(KEEP_FLOAT_ROLES)}")

    def describe(self) -> str:
        """One line: ``per-channel, minmax, quint8, float: first_conv + head_outputs``."""
        cal = f"percentile {self.percentile}" if self.calibration == "percentile" else self.calibration
        kept = " + ".join(self.keep_float) if self.keep_float else "none"
        ops = "" if self.ops == "all" else f", int8 ops: {' + '.join(OP_SETS[self.ops] or ())}"
        return (f"{'per-channel' if self.per_channel else 'per-tensor'} weights, {cal}, {self.activations}"
                f"{' symmetric' if self.symmetric else ''} activations, float: {kept}{ops}")


def _r(name: str, **kw: Any) -> Recipe:
    return Recipe(name, **kw)


# The chosen recipe of each family first, then the fallbacks in the order they are tried (each costs
# one quantization and one evaluation). Measured (README "int8", `ssdlite benchmark int8 --recipes all`)
# on the trained V3-Small models: per-tensor weights lose 3x more AP than per-channel (1.3 vs 0.4 AP
# on the shapes model: BN folded into depthwise convs gives channels of very different ranges);
# qint8 (symmetric) activations lose more and run 2-5x slower in ONNX Runtime on x86 (no u8s8 kernel);
# percentile beats entropy and minmax on the model whose activations have outliers (tiny80);
# keeping the hard-swish / squeeze-excite parts of V3 in float is the largest single gain there
# (7.8 -> 2.8 AP lost) and costs little time, since ONNX Runtime runs hard-swish in float anyway.
# The last V3 fallback also keeps the depthwise convs in float (only the 1x1 convs int8): on the retrained
# tiny80 model 3.05 -> 2.39 AP lost (ONNX Runtime), still above a 1-point bound.
# V1 / V2 (ReLU6 only, no hard-swish / SE) had no trained model to measure: they get the same
# per-channel / minmax / float-predictor recipe, then percentile, then float first conv as well.
RECIPES: dict[str, tuple[Recipe, ...]] = {
    "v1": (
        _r("v1-default", keep_float=("head_outputs",)),
        _r("v1-percentile", calibration="percentile", keep_float=("head_outputs",)),
        _r("v1-float-ends", calibration="percentile", keep_float=("first_conv", "head_outputs")),
    ),
    "v2": (
        _r("v2-default", keep_float=("head_outputs",)),
        _r("v2-percentile", calibration="percentile", keep_float=("head_outputs",)),
        _r("v2-float-ends", calibration="percentile", keep_float=("first_conv", "head_outputs")),
    ),
    "v3": (
        _r("v3-default", keep_float=("head_outputs",)),
        _r("v3-float-hswish-se", keep_float=("first_conv", "head_outputs", "squeeze_excite", "hardswish")),
        _r("v3-percentile-float-hswish-se", calibration="percentile",
           keep_float=("first_conv", "head_outputs", "squeeze_excite", "hardswish")),
        _r("v3-float-depthwise-hswish-se", keep_float=("first_conv", "head_outputs", "squeeze_excite", "hardswish", "depthwise")),
    ),
}
RECIPES["other"] = RECIPES["v2"]


def family_of(backbone: str) -> str:
    """``mobilenet_v3_small`` -> ``v3``; ``mobilenet_v1`` -> ``v1``; a backbone outside the MobileNets -> ``other``."""
    for fam in ("v1", "v2", "v3"):
        if backbone.startswith(f"mobilenet_{fam}"):
            return fam
    return "other"


def recipes_for(backbone: str) -> tuple[Recipe, ...]:
    """The recipes to try for a backbone, chosen one first (see :data:`RECIPES`)."""
    return RECIPES[family_of(backbone)]


# ----------------------------------------------------------------------------- calibration images


def calibration_images(folder: str | Path, count: int | None) -> list[Path]:
    """Up to ``count`` image files of ``folder`` (sorted; evenly spaced when there are more).

    ValueError naming the folder when it does not exist or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"calibration folder {folder} does not exist (give a folder of images, or 'val')")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"calibration folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return spread(paths, count)


def spread(items: Sequence[Any], count: int | None) -> list[Any]:
    """``count`` items evenly spaced over ``items`` (all of them when ``count`` is None or larger)."""
    if count is not None and count < 1:
        raise ValueError(f"the calibration count must be >= 1, got {count}")
    if count is None or count >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def load_calibration(paths: Iterable[Path], input_size: tuple[int, int], preprocess_cfg: Any
                     ) -> tuple[np.ndarray, list[str]]:
    """``(batch (N, 3, H, W) float32, skipped)``: the images preprocessed as ``Detector`` does.

    Unreadable files are skipped and listed in ``skipped`` (``"path: reason"``); ValueError when
    none could be read.
    """
    from ssdlite.deploy.detector import preprocess

    inputs, skipped, tried = [], [], 0
    for path in paths:  # preprocessed one by one: only network-sized copies are kept
        tried += 1
        try:
            inputs.append(preprocess([load_image(path)], input_size, preprocess_cfg)[0])
        except ValueError as e:
            skipped.append(str(e))
    if not inputs:
        raise ValueError(f"none of the {tried} calibration images could be read (first: {skipped[0] if skipped else '-'})")
    return np.concatenate(inputs), skipped


_CHUNK = 16  # calibration images run per pass (ranges / histograms merged between passes: bounded memory)


class _Reader:
    """A ``CalibrationDataReader`` over a preprocessed batch, one image per call (the export has batch 1)."""

    def __init__(self, batch: np.ndarray, input_name: str) -> None:
        self.batch, self.input_name = batch, input_name
        self.start, self.end = 0, len(batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= self.end:
            return None
        item = {self.input_name: self.batch[self.start : self.start + 1]}
        self.start += 1
        return item

    def rewind(self) -> None:
        self.start = 0

    def __len__(self) -> int:  # rounded up to whole chunks: ONNX Runtime wants it divisible by the chunk size
        return -(-len(self.batch) // _CHUNK) * _CHUNK

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self.batch))


# ----------------------------------------------------------------------------- nodes kept in float


def float_nodes(model: Any, roles: Sequence[str]) -> list[str]:
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) that ``roles`` keep in float."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    names: list[str] = []
    if "first_conv" in roles:
        first = [n for name in (i.name for i in graph.input) for n in consumers.get(name, []) if n.op_type == "Conv"]
        names += [n.name for n in first]
    if "head_outputs" in roles:  # walk back from the outputs through reshapes / concats to the convs
        todo, seen = [o.name for o in graph.output], set()
        while todo:
            node = producer.get(todo.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type == "Conv":
                names.append(node.name)
            elif node.op_type in ("Reshape", "Transpose", "Concat", "Flatten", "Squeeze", "Unsqueeze", "Identity"):
                todo.append(node.input[0]) if node.op_type != "Concat" else todo.extend(node.input)
    if "squeeze_excite" in roles:  # GlobalAveragePool -> ... -> Mul(gate, x): every node in between
        for pool in (n for n in graph.node if n.op_type == "GlobalAveragePool"):
            x = pool.input[0]
            frontier, path = list(pool.output), [pool]
            for _ in range(8):
                nxt = [c for t in frontier for c in consumers.get(t, [])]
                if not nxt:
                    break
                path += nxt
                if any(c.op_type == "Mul" and x in c.input for c in nxt):
                    names += [n.name for n in path]
                    break
                frontier = [o for c in nxt for o in c.output]
    if "hardswish" in roles:  # HardSwish(x), or Mul(x, HardSigmoid(x)) as ONNX Runtime's optimizer rewrites it
        for n in graph.node:
            x = None
            if n.op_type == "HardSwish":
                x = n.input[0]
            elif n.op_type == "Mul" and len(n.input) == 2:
                for a, b in (n.input, n.input[::-1]):
                    gate = producer.get(b)
                    if gate is not None and gate.op_type == "HardSigmoid" and gate.input[0] == a:
                        x = a
                        names.append(gate.name)
            if x is not None:
                names.append(n.name)
                if x in producer and producer[x].op_type == "Conv":
                    names.append(producer[x].name)
    if "depthwise" in roles:
        names += [n.name for n in graph.node if n.op_type == "Conv"
                  and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------- quantization


def _calibration_method(recipe: Recipe) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[recipe.calibration]


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, batch: np.ndarray, recipe: Recipe, *,
                  record: dict | None = None, cache_dir: str | Path | None = None) -> Path:
    """Write ``out_path``: the fp32 ssdlite export ``fp32_path`` quantized with ``recipe``.

    ``batch``: the calibration images, preprocessed (:func:`load_calibration`). The metadata of
    ``fp32_path`` is kept and ``ssdlite.quantization`` added (the recipe, the calibration count,
    the nodes kept in float, and ``record``: e.g. the measured APs). ``cache_dir``: keep the
    calibration ranges there (one file per calibration method) so another recipe with the same
    method does not run the calibration again. Written atomically.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ssdlite.files import atomic_write

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    started = time.perf_counter()
    source = onnx.load(str(fp32_path))
    meta = {p.key: p.value for p in source.metadata_props}
    if meta.get("ssdlite.outputs", "raw") != "raw":
        raise ValueError(f"{fp32_path}: int8 quantization needs the raw-output export (not --with-nms)")
    with tempfile.TemporaryDirectory(prefix="ssdlite_int8_") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)  # folds the shape arithmetic
        model = onnx.load(str(prepared))
        kept = float_nodes(model, recipe.keep_float)
        cache = None
        if cache_dir is not None:
            cache = Path(cache_dir) / f"ranges_{recipe.calibration}_{recipe.percentile}_{recipe.ops}_{len(batch)}.json"
        quantized = Path(tmp) / "int8.onnx"
        extra = {
            "ActivationSymmetric": recipe.symmetric,
            "WeightSymmetric": True,
            "CalibStridedMinMax": _CHUNK,  # chunks of images (every method), not all outputs of all images in memory
        }
        if recipe.calibration == "percentile":
            extra["CalibPercentile"] = recipe.percentile
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
            quantize_static(
                str(prepared), str(quantized), _Reader(batch, model.graph.input[0].name),
                quant_format=QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                activation_type=QuantType.QUInt8 if recipe.activations == "quint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=kept,
                op_types_to_quantize=list(OP_SETS[recipe.ops]) if OP_SETS[recipe.ops] else None,
                calibrate_method=_calibration_method(recipe),
                extra_options=extra,
                calibration_cache_path=cache,
            )
        result = onnx.load(str(quantized))
    info = {
        "format": "onnx-qdq",
        "tool": "onnxruntime.quantization.quantize_static",
        "recipe": recipe.name,
        "settings": asdict(recipe),
        "description": recipe.describe(),
        "weights": "int8 symmetric " + ("per output channel" if recipe.per_channel else "per tensor"),
        "calibration_images": int(len(batch)),
        "float_nodes": kept,
        "seconds": round(time.perf_counter() - started, 1),
        **(record or {}),
    }
    del result.metadata_props[:]
    for key, value in {**meta, QUANT_KEY: json.dumps(info)}.items():
        entry = result.metadata_props.add()
        entry.key, entry.value = key, value
    result.producer_name = source.producer_name
    result.doc_string = f"{source.doc_string}; int8 QDQ ({recipe.describe()})"
    onnx.checker.check_model(result)
    atomic_write(out_path, lambda f: f.write(result.SerializeToString()))
    return out_path


def read_quantization(meta: dict[str, str]) -> dict | None:
    """The ``ssdlite.quantization`` record of an export's metadata, or None for an fp32 file."""
    raw = meta.get(QUANT_KEY)
    return json.loads(raw) if raw else None


def set_quantization(path: str | Path, record: dict, out: str | Path | None = None) -> Path:
    """Merge ``record`` into the ``ssdlite.quantization`` metadata of the int8 file ``path`` and
    write it (atomically) to ``out`` (default: ``path`` itself). Returns the path written."""
    import onnx

    from ssdlite.files import atomic_write

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    info = {**(read_quantization(meta) or {}), **record}
    for p in model.metadata_props:
        if p.key == QUANT_KEY:
            p.value = json.dumps(info)
    target = Path(out if out is not None else path)
    atomic_write(target, lambda f: f.write(model.SerializeToString()))
    return target
