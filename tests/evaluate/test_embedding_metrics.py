"""The embedding metrics on hand-made vectors whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vitrine.evaluate.embedding import (
    average_precision_at_k,
    bytes_per_vector,
    knn_accuracy,
    neighbours,
    retrieval_map_at_k,
    text_retrieval_map_at_k,
    vote,
    zero_shot_accuracy,
)


def unit(*angles_deg):
    a = np.radians(angles_deg)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_neighbours_leave_one_out_and_order():
    v = unit(0, 10, 30, 90)
    ids, sims = neighbours(v, 2)
    assert ids.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert sims[0, 0] == pytest.approx(np.cos(np.radians(10)), abs=1e-6)
    # equal similarities: the lower row first
    v = unit(0, 45, -45)
    assert neighbours(v, 2)[0][0].tolist() == [1, 2]


def test_knn_accuracy_known_answers():
    # two tight clusters and one image of class 0 sitting inside class 1's cluster
    v = unit(0, 5, 10, 90, 95, 100, 92)
    labels = [0, 0, 0, 1, 1, 1, 0]
    # k=1: rows 3 (90) and 4 (95) have the intruder (92) as nearest -> wrong; the intruder's nearest
    # is 90 (class 1) -> wrong; rows 0, 1, 2, 5 right
    assert knn_accuracy(v, labels, 1) == pytest.approx(4 / 7)
    # k=3: rows 3..5 have the intruder among their 3 nearest but 2 of class 1 -> right; the
    # intruder's three nearest are 90, 95, 100 (class 1) -> wrong
    assert knn_accuracy(v, labels, 3) == pytest.approx(6 / 7)


def test_vote_tie_breaks_by_summed_similarity_then_label():
    assert vote([0, 1], [0.9, 0.8]) == 0
    assert vote([0, 1, 1, 0], [0.9, 0.8, 0.8, 0.5]) == 1  # 2 votes each: 1.6 against 1.4
    assert vote([2, 1], [0.5, 0.5]) == 1  # equal counts and sums: the lower label


def test_average_precision_at_k_normalisation():
    # relevant at ranks 1 and 3, 2 relevant in all: (1/1 + 2/3) / 2
    assert average_precision_at_k([True, False, True], 2, 3) == pytest.approx((1 + 2 / 3) / 2)
    # more relevant images than k: divided by k, so a perfect top-k scores 1
    assert average_precision_at_k([True, True], 5, 2) == pytest.approx(1.0)
    # one relevant image found at rank 2 out of k=2: (1/2) / min(2, 1)
    assert average_precision_at_k([False, True], 1, 2) == pytest.approx(0.5)
    assert average_precision_at_k([False, False], 3, 2) == 0.0
    assert average_precision_at_k([False], 0, 1) is None


def test_retrieval_map_at_k_known_answer():
    v = unit(0, 10, 90, 100, 45)
    labels = [0, 0, 1, 1, 2]  # row 4 is alone in its class: not a query
    # rows 0..3: the first result is the other image of their class -> AP@2 = 1 each
    assert retrieval_map_at_k(v, labels, 2) == pytest.approx(1.0)
    # make row 1 land nearer class 1 than row 0: angles 0, 80 (class 0), 90, 100 (class 1)
    v = unit(0, 80, 90, 100)
    labels = [0, 0, 1, 1]
    # row 0: results 1 (rel), 2 -> AP@2 = 1; row 1: results 2, 3 (no rel) -> 0;
    # row 2: results 1? cos(10)=row1 vs row3 cos(10): equal, lower row (1) first -> [1, 3]: rel at 2 -> 1/2
    # row 3: results 2 (rel) -> 1
    assert retrieval_map_at_k(v, labels, 2) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert retrieval_map_at_k(unit(0, 90), [0, 1], 1) is None


def test_zero_shot_and_text_retrieval():
    images = unit(0, 10, 90, 80)
    texts = unit(5, 85)  # class 0 prompt at 5 degrees, class 1 at 85
    assert zero_shot_accuracy(images, texts, [0, 0, 1, 1]) == 1.0
    assert zero_shot_accuracy(images, texts, [0, 1, 1, 1]) == 0.75
    # query of class 1 at 85 degrees: ranked 80 (row 3), 90 (row 2): both relevant -> 1
    assert text_retrieval_map_at_k(texts[1:], [1], images, [0, 0, 1, 1], k=2) == pytest.approx(1.0)
    # query of class 0 against labels where only row 2 is class 0: ranked [0, 1] at k=2 -> 0
    assert text_retrieval_map_at_k(texts[:1], [0], images, [1, 1, 0, 1], k=2) == 0.0


def test_bytes_per_vector_follows_the_index_kind():
    assert bytes_per_vector(1000, 512) == {"index": "IDMap2,Flat", "bytes_per_vector": 4 * 512 + 8}
    big = bytes_per_vector(200_000, 512)
    assert big["index"].endswith("SQfp16") and big["bytes_per_vector"] == 2 * 512 + 8
