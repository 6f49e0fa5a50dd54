"""Benchmarks run by ``tools/benchmark.py``: each module has ``add_arguments(parser)`` and ``run(args) -> int``.

They print figures side by side with the reference in the same run (medians and ratios);
none of them is a timed unit test.
"""

BENCHMARKS = {
    "latency": ("ssdlite.apps.bench.latency", "per-stage and end-to-end inference latency vs torchvision"),
    "data": ("ssdlite.apps.bench.data", "data pipeline images/s vs torchvision's reference transforms"),
    "paper": ("ssdlite.apps.bench.paper", "the MobileNet papers' detection rows: params, MAdds, paper mAP, our latency per back end"),
    "eval": ("ssdlite.apps.bench.eval", "COCO evaluation time: faster-coco-eval vs pycocotools"),
    "int8": ("ssdlite.apps.bench.int8", "int8 vs fp32 per back end: COCO AP / AP50 and network time of trained models"),
}
