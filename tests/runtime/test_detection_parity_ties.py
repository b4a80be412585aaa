"""detection_parity: a box a detector outputs for two classes is matched to the candidate of the same class.

Detectors (RetinaNet, FCOS, R-CNNs) run NMS per class, so one box often comes out twice with two
labels; the candidate's order among equal boxes is arbitrary, and matching by IoU alone then counted
a faithful export as disagreeing on the class.
"""

from __future__ import annotations

import numpy as np

from vitrine.runtime.parity import detection_parity


def test_equal_boxes_of_two_classes_match_by_class():
    box = [10.0, 10.0, 40.0, 30.0]
    other = [50.0, 5.0, 60.0, 25.0]
    reference = [(np.array([box, box, other]), np.array([1, 2, 1]), np.array([0.9, 0.8, 0.7]))]
    swapped = [(np.array([box, box, other]), np.array([2, 1, 1]), np.array([0.8, 0.9, 0.7]))]
    parity = detection_parity(reference, swapped)
    assert parity.passed and parity.figures["boxes_kept"] == 1.0 and parity.figures["class_agreement"] == 1.0
    # a box whose class really changed is still a disagreement
    changed = [(np.array([box, other]), np.array([3, 1]), np.array([0.9, 0.7]))]
    parity = detection_parity(reference, changed)
    assert parity.figures["class_agreement"] == 1 / 3 and not parity.passed
