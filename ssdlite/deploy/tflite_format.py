"""The ssdlite LiteRT (TFLite) file: the model's metadata inside the flatbuffer, written and read back.

A ``.tflite`` written by :func:`ssdlite.deploy.tflite_export.export_tflite` carries the same
``ssdlite.*`` entries as an ONNX export (:func:`ssdlite.deploy.onnx_format.build_metadata`:
config, class names, input size, preprocessing, postprocess settings, feature sizes, anchors),
each as one entry of the flatbuffer's ``metadata`` list (``Model.metadata[i].name`` = the key,
its buffer = the UTF-8 value), so an app needs nothing but the file: any flatbuffer reader of
the LiteRT schema finds them, and :func:`read_metadata` returns them as a dict.

What differs from the ONNX file:

* ``ssdlite.preprocess`` says ``"layout": "NHWC"``: the input is ``images`` ``(1, H, W, 3)``,
  normalized as the formula says (channels last, as LiteRT models take images).
* The outputs are ``cls_logits`` ``(1, A, C + 1)`` and ``box_deltas`` ``(1, A, 4)``, found by
  name in the ``serving_default`` signature (the graph order may differ).
* An int8 file adds ``ssdlite.quantization`` (JSON: tool, recipe, calibration images, whether the
  input / outputs are int8); with int8 input / outputs their scale and zero point are the tensors'
  own quantization parameters (``real = scale * (q - zero_point)``).

Imports numpy, and the LiteRT flatbuffer schema (``ai_edge_litert``) where a file is read or written.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["SIGNATURE", "INPUT", "QUANT_KEY", "LAYOUT", "tflite_metadata", "with_metadata", "read_metadata", "read_quantization"]

SIGNATURE = "serving_default"  # the signature the exporter writes
INPUT = "images"  # the signature's input name; outputs: onnx_format.OUTPUTS["raw"]
QUANT_KEY = "ssdlite.quantization"  # metadata key of an int8 file's quantization record (JSON), as for int8 ONNX
LAYOUT = "NHWC"
_IDENTIFIER = b"TFL3"  # flatbuffer file identifier of a LiteRT model


def tflite_metadata(meta: dict[str, str], quantization: dict | None = None) -> dict[str, str]:
    """``build_metadata``'s entries adapted to the LiteRT file: NHWC input, plus the quantization record."""
    out = dict(meta)
    pre = json.loads(out["ssdlite.preprocess"])
    pre["layout"] = LAYOUT
    out["ssdlite.preprocess"] = json.dumps(pre)
    if quantization is not None:
        out[QUANT_KEY] = json.dumps(quantization)
    return out


def with_metadata(model: bytes, meta: dict[str, str]) -> bytes:
    """``model`` (a LiteRT flatbuffer) with ``meta`` as metadata entries (an entry of the same name is replaced)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    keep = [m for m in (obj.metadata or []) if _name(m.name) not in meta]
    obj.buffers = list(obj.buffers or [])
    for key, value in meta.items():
        buf = schema.BufferT()
        buf.data = np.frombuffer(value.encode("utf-8"), dtype=np.uint8)
        obj.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name, entry.buffer = key, len(obj.buffers) - 1
        keep.append(entry)
    obj.metadata = keep
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def _name(name: bytes | str | None) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else (name or "")


def read_metadata(path: str | Path, content: bytes | None = None) -> dict[str, str]:
    """Every named metadata entry of a ``.tflite`` as strings (values that are not UTF-8 are left out).

    Reads only the entries, not the weights. FileNotFoundError if the file does not exist,
    ValueError naming it if it is not a LiteRT model.
    """
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    if content is None:
        if not path.is_file():
            raise FileNotFoundError(f"LiteRT file {path} does not exist")
        content = path.read_bytes()
    if len(content) < 8 or content[4:8] != _IDENTIFIER:
        raise ValueError(f"{path} is not a LiteRT (.tflite) model: no '{_IDENTIFIER.decode()}' flatbuffer identifier")
    try:
        model = schema.Model.GetRootAs(content, 0)
        meta: dict[str, str] = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            buf = model.Buffers(entry.Buffer())
            if buf.DataLength():
                data = buf.DataAsNumpy().tobytes()
            else:  # a large model keeps its buffers after the flatbuffer (offset, size)
                data = content[buf.Offset() : buf.Offset() + buf.Size()]
            try:
                meta[_name(entry.Name())] = data.decode("utf-8")
            except UnicodeDecodeError:
                continue  # binary entries of the converter (e.g. min_runtime_version is text; others may not be)
    except Exception as e:  # noqa: BLE001 - a corrupt flatbuffer raises anything from struct.error to IndexError
        raise ValueError(f"{path} is not a readable LiteRT model: {type(e).__name__}: {e}") from None
    return meta


def read_quantization(meta: dict[str, str]) -> dict | None:
    """The ``ssdlite.quantization`` record of a file's metadata, or None for an fp32 file."""
    raw = meta.get(QUANT_KEY)
    return json.loads(raw) if raw else None
