"""Evaluation: COCO box metrics (pycocotools-exact, two back ends), and running a detector over a
COCO-format dataset to score it.

- ``coco``: :func:`~ssdlite.eval.coco.evaluate_coco`, its :class:`~ssdlite.eval.coco.EvalResult`,
  the stat names, and detections -> COCO results;
- ``loading``: ground truth and results, loaded from files or dicts and checked;
- ``backends``: the two evaluators (faster-coco-eval, the default, and pycocotools, the reference);
- ``report``: the text report (the 12 stats in pycocotools' wording, the per-class table);
- ``plots``: precision-recall curves (matplotlib);
- ``predict``: a detector over a COCO-format dataset -> results -> metrics.
"""
