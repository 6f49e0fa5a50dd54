"""Evaluation: COCO box metrics (pycocotools-exact, two back ends), Pascal VOC AP (the devkit's
11-point and area metrics), and running a detector over a COCO-format dataset to score it.

- ``coco``: :func:`~ssdlite.eval.coco.evaluate_coco`, its :class:`~ssdlite.eval.coco.EvalResult`,
  the stat names, and detections -> COCO results;
- ``voc``: VOC per-class AP and mAP from the same COCO-format inputs (``metrics=("voc07", "voc")``);
- ``loading``: ground truth and results, loaded from files or dicts and checked;
- ``backends``: the two evaluators (faster-coco-eval, the default, and pycocotools, the reference);
- ``report``: the text report (the 12 stats in pycocotools' wording, the per-class tables, the VOC mAPs);
- ``plots``: precision-recall curves (matplotlib);
- ``predict``: a detector over a COCO-format dataset -> results -> metrics.
"""
