"""Search spaces: typed by the trainer's config, expanded into the same numbered trials every time,
with errors that name the option."""

import pytest

from vitrine.core.errors import VitrineError
from vitrine.experiments.space import Distribution, SearchSpace, parse_assignment
from vitrine.experiments.sweep import SweepSpec
from vitrine.train.classification.config import FinetuneConfig
from vitrine.train.detection.config import DetectionConfig


def test_grid_values_are_typed_and_expanded_in_order():
    space = SearchSpace.build(
        DetectionConfig,
        base={"epochs": "3"},
        grid={"arch": "maskrcnn,fasterrcnn", "image_size": "96,128,128", "grad_clip": "none,5"},
    )
    trials = space.trials()
    assert space.size() == len(trials) == 2 * 2 * 2  # the repeated 128 counts once
    assert trials[0] == {"epochs": 3, "arch": "maskrcnn", "image_size": 96, "grad_clip": None}
    assert trials[-1] == {"epochs": 3, "arch": "fasterrcnn", "image_size": 128, "grad_clip": 5.0}
    assert space.varied() == ["arch", "image_size", "grad_clip"]
    assert SearchSpace.build(DetectionConfig, grid={"anchor_sizes": "16 32 64 128,32 64 128 256"}).grid[
        "anchor_sizes"
    ] == [
        [16, 32, 64, 128],
        [32, 64, 128, 256],
    ]


def test_random_draws_are_seeded_and_in_range():
    build = lambda seed: SearchSpace.build(  # noqa: E731
        FinetuneConfig,
        grid={"image_size": [32, 48]},
        random={"lr": "loguniform:1e-4:1e-2", "freeze_stages": "randint:0:2", "augment": "choice:none,strong"},
        samples=3,
        seed=seed,
    )
    a, b, c = build(1).trials(), build(1).trials(), build(2).trials()
    assert a == b and a != c and len(a) == 6
    assert all(1e-4 <= t["lr"] <= 1e-2 and t["freeze_stages"] in (0, 1, 2) for t in a)
    assert {t["augment"] for t in a} <= {"none", "strong"}
    assert [t["image_size"] for t in a] == [32, 32, 32, 48, 48, 48]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid": {"imagesize": "32"}}, "unknown option 'imagesize'"),
        ({"grid": {"image_size": "big"}}, "image_size: 'big' is not an integer"),
        ({"grid": {"epochs": "0,2"}}, "not a valid config"),
        ({"grid": {"lr": ""}}, "at least one value"),
        ({"random": {"lr": "gaussian:0:1"}}, "cannot read the distribution"),
        ({"random": {"lr": "loguniform:0:1"}}, "LOW > 0"),
        ({"random": {"lr": "uniform:1:0"}}, "LOW < HIGH"),
        ({"grid": {"lr": "0.1"}, "random": {"lr": "uniform:0:1"}}, "both in the grid and random"),
        (
            {
                "grid": {
                    "image_size": ",".join(str(32 + i) for i in range(40)),
                    "lr": ",".join(str(i / 100 + 0.01) for i in range(30)),
                }
            },
            "more than 1000",
        ),
    ],
)
def test_bad_spaces_say_what_is_wrong(kwargs, message):
    with pytest.raises(VitrineError, match=message):
        SearchSpace.build(FinetuneConfig, **kwargs)


def test_assignments_and_distributions():
    assert parse_assignment("image-size = 256,320") == ("image_size", "256,320")
    with pytest.raises(VitrineError, match="OPTION=VALUES"):
        parse_assignment("image_size")
    assert Distribution.parse("lr", "choice:a,b").describe() == "choice:a,b"


def test_sweep_spec_from_options_and_yaml(tmp_path):
    spec = SweepSpec.build("classify", "shapes", grid=["image_size=32,48"], base=["epochs=1"], trial_minutes=8)
    assert spec.task == "classify" and spec.space.size() == 2 and spec.trial_minutes == 8
    with pytest.raises(VitrineError, match="given twice"):
        SweepSpec.build("classify", "shapes", grid=["lr=0.1", "lr=0.2"])
    with pytest.raises(VitrineError, match="no sweeps for task"):
        SweepSpec.build("embed", "shapes")
    coco = tmp_path / "data" / "instances.json"
    coco.parent.mkdir()
    coco.write_text("{}")
    (tmp_path / "sweep.yaml").write_text(
        "task: detect\ndataset: data/instances.json\ngrid:\n  image_size: [96, 128]\n  arch: [fasterrcnn]\n"
        "base: {epochs: 2}\nearly_stopping: true\n"
    )
    spec = SweepSpec.from_yaml(tmp_path / "sweep.yaml", trial_minutes=5)
    assert spec.dataset == str(coco.resolve())  # relative to the file
    assert spec.early_stopping and spec.trial_minutes == 5 and spec.space.size() == 2
    (tmp_path / "bad.yaml").write_text("task: detect\ndataset: x\ngrid: {image_size: [96\n")
    with pytest.raises(VitrineError, match=r"bad.yaml line \d+: not valid YAML"):
        SweepSpec.from_yaml(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("task: classify\ndataset: shapes\ngrids: {}\n")
    with pytest.raises(VitrineError, match="unknown key grids"):
        SweepSpec.from_yaml(tmp_path / "typo.yaml")


def test_a_null_value_is_none_for_an_optional_option():
    """JSON's and YAML's null (the API's body, a stored spec) means None, as the word "none" does."""
    space = SearchSpace.build(FinetuneConfig(), {"early_stopping_patience": None}, {"lr": [0.01, 0.1]}, {}, 1, 0)
    assert [t["early_stopping_patience"] for t in space.trials()] == [None, None]
    with pytest.raises(VitrineError, match="epochs: None is not an integer"):
        SearchSpace.build(FinetuneConfig(), {"epochs": None}, {}, {}, 1, 0)
