"""Near-duplicate groups, outlier scores and label errors on hand-made vectors with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vitrine.search.neighbours import (
    BadParameter,
    Item,
    choose_keep,
    label_errors,
    near_duplicate_groups,
    outlier_scores,
    similar_pairs,
)


def unit(*rows) -> np.ndarray:
    a = np.asarray(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def at_angle(deg: float) -> list[float]:
    """A 3-D unit vector at ``deg`` degrees from (1, 0, 0) in the x-y plane."""
    r = np.deg2rad(deg)
    return [np.cos(r), np.sin(r), 0.0]


def test_range_search_pairs_and_transitive_groups():
    # a, b at 10 deg (cos 0.985); b, c at 10 deg more; a, c at 20 deg (cos 0.940): at 0.95,
    # the pairs are a-b and b-c, and union-find makes one group {a, b, c}; d is far from all
    v = unit(at_angle(0), at_angle(10), at_angle(20), [0, 0, 1])
    i, j, s = similar_pairs(v, 0.95)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (1, 2)]
    assert np.allclose(s, np.cos(np.deg2rad(10)), atol=1e-5)
    items = [Item(key=n, path=p, width=10, height=10, size=100, mtime_ns=5) for n, p in enumerate("abcd")]
    groups = near_duplicate_groups(v, items, 0.95)
    assert len(groups) == 1
    g = groups[0]
    assert g.keep.path == "a" and g.keep_rule == "path" and g.keep.similarity == 1.0
    assert [m.path for m in g.others] == ["b", "c"]  # most similar to the kept one first
    assert g.others[0].similarity == pytest.approx(np.cos(np.deg2rad(10)), abs=1e-5)
    assert g.others[1].similarity == pytest.approx(np.cos(np.deg2rad(20)), abs=1e-5)
    # a stricter threshold breaks the chain: no pair reaches cos(5 deg)
    assert near_duplicate_groups(v, items, 0.999) == []


def test_threshold_is_inclusive():
    v = unit([1, 0], [1, 1])
    cos45 = float(v[0] @ v[1])
    items = [Item(0, "x"), Item(1, "y")]
    assert len(near_duplicate_groups(v, items, cos45)) == 1
    assert near_duplicate_groups(v, items, cos45 + 1e-4) == []


@pytest.mark.parametrize(
    "b, rule",
    [
        (dict(width=20, height=20, size=1, mtime_ns=9), "resolution"),
        (dict(width=10, height=10, size=500, mtime_ns=9), "file size"),
        (dict(width=10, height=10, size=100, mtime_ns=1), "oldest"),
    ],
)
def test_keep_rule_names_the_rule_that_decided(b, rule):
    a = Item(0, "a.jpg", width=10, height=10, size=100, mtime_ns=5)
    other = Item(1, "b.jpg", **b)
    keep, why = choose_keep([a, other])
    assert keep is other and why == rule
    v = unit([1, 0], [1, 0.01])
    (group,) = near_duplicate_groups(v, [a, other], 0.9)
    assert group.keep.path == "b.jpg" and group.keep_rule == rule and [m.path for m in group.others] == ["a.jpg"]


def test_exact_duplicates_are_marked_and_groups_sorted_by_size():
    v = unit([1, 0, 0], [1, 0.01, 0], [1, 0.02, 0], [0, 1, 0], [0, 1, 0.01], [0, 0, 1])
    items = [
        Item(0, "g1/a", same_bytes=("copy/a",)),
        Item(1, "g1/b"),
        Item(2, "g1/c"),
        Item(3, "g2/a"),
        Item(4, "g2/b"),
        Item(5, "alone", same_bytes=("alone2",)),
    ]
    groups = near_duplicate_groups(v, items, 0.99)
    assert [len(g.others) + 1 for g in groups] == [3, 2]
    assert groups[0].keep.path == "g1/a" and groups[0].keep.exact_duplicates == ["copy/a"]
    assert all(m.exact_duplicates == [] for m in groups[0].others)


def test_a_threshold_that_links_too_many_pairs_fails_early(monkeypatch):
    from vitrine.search import neighbours

    monkeypatch.setattr(neighbours, "MAX_PAIRS", 10)
    monkeypatch.setattr(neighbours, "RANGE_CHUNK", 3)
    v = unit(*([1, 0.01 * i] for i in range(12)))  # 66 pairs above 0.9
    with pytest.raises(BadParameter, match="links more than 10 pairs") as e:
        similar_pairs(v, 0.9)
    assert "raise the threshold" in e.value.hint
    # chunked, the pairs are the same as in one search
    monkeypatch.setattr(neighbours, "MAX_PAIRS", 1000)
    i, j, _ = similar_pairs(v, 0.9)
    assert len(i) == 66 and (i < j).all()


def test_bad_threshold_and_shapes():
    v = unit([1, 0], [0, 1])
    for t in (0, -0.5, 1.01, float("nan")):
        with pytest.raises(BadParameter, match="out of range"):
            near_duplicate_groups(v, [Item(0, "a"), Item(1, "b")], t)
    assert BadParameter.status == 422


def test_outlier_order_and_scores():
    # three vectors close together and one far from them: the far one is the outlier
    v = unit(at_angle(0), at_angle(5), at_angle(10), at_angle(90))
    scores = outlier_scores(v, [0, 1, 2, 3], ["a", "b", "c", "far"], k=2)
    assert [o.path for o in scores][0] == "far"
    far = scores[0]
    # its two nearest are c (80 deg) and b (85 deg)
    expected = 1 - (np.cos(np.deg2rad(80)) + np.cos(np.deg2rad(85))) / 2
    assert far.score == pytest.approx(expected, abs=1e-5)
    assert far.nearest == "c" and far.nearest_similarity == pytest.approx(np.cos(np.deg2rad(80)), abs=1e-5)
    # b is the least isolated: 5 deg from both others
    assert scores[-1].path == "b"
    assert scores[-1].score == pytest.approx(1 - np.cos(np.deg2rad(5)), abs=1e-5)
    # k larger than the collection: the mean over every other image
    all_k = outlier_scores(v, [0, 1, 2, 3], ["a", "b", "c", "far"], k=10)
    far_all = next(o for o in all_k if o.path == "far")
    assert far_all.score == pytest.approx(1 - np.mean([np.cos(np.deg2rad(d)) for d in (80, 85, 90)]), abs=1e-5)
    with pytest.raises(BadParameter):
        outlier_scores(v, [0, 1, 2, 3], list("abcd"), k=0)


def test_label_errors_leave_one_out_with_k():
    # cluster A around 0 deg, cluster B around 90 deg; "a3" sits in A but is labelled B
    v = unit(at_angle(0), at_angle(2), at_angle(4), at_angle(3), at_angle(90), at_angle(88), at_angle(86))
    labels = ["A", "A", "A", "B", "B", "B", "B"]
    paths = ["a0", "a1", "a2", "a3", "b0", "b1", "b2"]
    errors = label_errors(v, labels, paths, k=3)
    assert len(errors) == 1
    e = errors[0]
    assert (e.path, e.label, e.suggested) == ("a3", "B", "A")
    assert e.agreement == pytest.approx(1.0) and e.label_agreement == 0.0
    # k=4: a3's neighbours are a1, a2, a0 and b2 (3/4 for A); a0, a1, a2 see a3 and b2 among
    # theirs, a 2-2 tie that includes their own label: no error
    (e4,) = label_errors(v, labels, paths, k=4)
    assert e4.path == "a3" and e4.agreement == pytest.approx(0.75) and e4.label_agreement == pytest.approx(0.25)
    # leave-one-out: an item never votes for itself (a lone item of its class is always flagged)
    v2 = unit(at_angle(0), at_angle(1), at_angle(2))
    (lone,) = label_errors(v2, ["A", "B", "A"], ["x", "lone", "z"], k=2)
    assert lone.path == "lone" and lone.suggested == "A"


def test_label_errors_sorted_by_confidence_and_ties():
    v = unit(at_angle(0), at_angle(1), at_angle(2), at_angle(3), at_angle(60), at_angle(61), at_angle(62))
    # "p" (1 deg) labelled C among A's: flagged with agreement 1.0 at k=2; "q" (61 deg) labelled A
    # among two B's: flagged too; a tie that includes the own label is no error
    labels = ["A", "C", "A", "A", "B", "A", "B"]
    paths = ["a", "p", "b", "c", "d", "q", "e"]
    errors = label_errors(v, labels, paths, k=2, splits=["train"] * 7)
    assert [e.path for e in errors] == ["p", "q"]  # equal confidence: by path
    assert all(e.agreement == 1.0 and e.split == "train" for e in errors)
    tie = label_errors(unit(at_angle(0), at_angle(1), at_angle(-1)), ["A", "A", "B"], ["m", "x", "y"], k=2)
    assert [(e.path, e.suggested) for e in tie] == [("y", "A")]  # m and x tie with their own label


def test_the_pixel_check_keeps_only_pairs_whose_pictures_agree():
    """Four items, all linked by their vectors; their signatures (hand-made unit vectors) say a~b
    and c~d are copies (correlation 0.9 and 0.7) while a~c is 0.0: two groups, not one. The pair
    counts and the correlation to the kept image are reported."""
    from vitrine.search.neighbours import PixelCheck

    v = unit([1, 0, 0], [1, 0.01, 0], [1, 0.02, 0], [1, 0.03, 0])
    items = [Item(key=n, path=p, width=10, height=10, size=100, mtime_ns=5) for n, p in enumerate("abcd")]
    sig = {0: [1, 0, 0], 1: [0.9, np.sqrt(1 - 0.81), 0], 2: [0, 0, 1], 3: [0, np.sqrt(1 - 0.49), 0.7]}
    asked: list[list[int]] = []

    def signatures(rows):
        asked.append(rows)
        return np.asarray([sig[r] for r in rows], np.float32)

    assert len(near_duplicate_groups(v, items, 0.99)) == 1  # the vectors alone: one group of four
    check = PixelCheck(signatures, threshold=0.6)
    groups = near_duplicate_groups(v, items, 0.99, check)
    assert asked == [[0, 1, 2, 3]]  # every image in a candidate pair, once
    assert [[g.keep.path, *(m.path for m in g.others)] for g in groups] == [["a", "b"], ["c", "d"]]
    assert groups[0].others[0].pixel_similarity == pytest.approx(0.9, abs=1e-6)
    assert groups[1].others[0].pixel_similarity == pytest.approx(0.7, abs=1e-6)
    assert groups[0].keep.pixel_similarity == 1.0
    assert check.to_dict() == {"pixel_threshold": 0.6, "candidate_pairs": 6, "rejected_pairs": 4, "images_checked": 4}
    # at 0.75 the c~d pair (0.7) goes too; an unreadable image (zero signature) links nothing
    assert len(near_duplicate_groups(v, items, 0.99, PixelCheck(signatures, threshold=0.75))) == 1
    sig[1] = [0, 0, 0]
    assert [g.keep.path for g in near_duplicate_groups(v, items, 0.99, PixelCheck(signatures, 0.6))] == ["c"]
    # no pixel check: no pixel similarity
    assert near_duplicate_groups(v, items, 0.99)[0].others[0].pixel_similarity is None


def test_bad_pixel_threshold():
    from vitrine.search.neighbours import check_pixel_threshold

    with pytest.raises(BadParameter, match="pixel threshold 1.5 is out of range"):
        check_pixel_threshold(1.5)
    assert check_pixel_threshold(-1) == -1.0
