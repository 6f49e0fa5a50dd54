"""Class names and dataset category ids: COCO's (instances_*2017.json order) and a model's own.

:func:`class_names_of` / :func:`category_ids_of` give a model's labels their names and ids: those
stored in its config, else COCO's for an 80-class model, else ``class_<i>`` / ``1..C``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ssdlite.config import ModelConfig

# The 80 COCO categories with their official ids (1..90 with gaps).
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"),
    (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"),
    (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"),
    (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"),
    (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"),
    (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"),
    (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"),
    (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"),
    (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"),
    (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"),
    (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)

COCO80_IDS: tuple[int, ...] = tuple(i for i, _ in COCO_CATEGORIES)
COCO80_NAMES: tuple[str, ...] = tuple(n for _, n in COCO_CATEGORIES)

# torchvision's 91-way layout: index = COCO id, 0 is background, "N/A" marks unused ids.
# Our class list for it has the 90 entries of ids 1..90.
_BY_ID = dict(COCO_CATEGORIES)
COCO90_IDS: tuple[int, ...] = tuple(range(1, 91))
COCO90_NAMES: tuple[str, ...] = tuple(_BY_ID.get(i, "N/A") for i in COCO90_IDS)


def class_names_of(m: "ModelConfig") -> list[str]:
    """The model's class names: ``m.class_names``, else COCO's 80 names (80 classes) or ``class_<i>``."""
    if m.class_names:
        return list(m.class_names)
    if m.num_classes == 80:
        return list(COCO80_NAMES)
    return [f"class_{i}" for i in range(m.num_classes)]


def category_ids_of(m: "ModelConfig") -> list[int]:
    """Dataset category id of each label: ``m.category_ids``, else COCO's 80 ids (80 classes) or 1..C."""
    if m.category_ids:
        return list(m.category_ids)
    if m.num_classes == 80:
        return list(COCO80_IDS)
    return list(range(1, m.num_classes + 1))
