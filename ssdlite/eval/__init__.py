"""Evaluation: COCO box metrics (pycocotools-exact, two back ends), and running a detector over a
COCO-format dataset to score it."""
