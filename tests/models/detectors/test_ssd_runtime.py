"""The packaged SSD on an OpenCV that cannot read its TensorFlow graph (OpenCV 5 removed the
importer): the registry reports it unavailable with the reason, and loading it is a
:class:`ModelUnavailable` (a 503 in the API, exit 2 in the CLI), never an AttributeError."""

from __future__ import annotations

import pytest

from vitrine.core.errors import ModelUnavailable
from vitrine.models import registry


def test_ssd_is_available_on_opencv_4():
    import cv2

    from vitrine.models.detectors.ssd import runtime_problem

    assert int(cv2.__version__.split(".")[0]) == 4, "the lock and pyproject.toml keep OpenCV below 5"
    assert runtime_problem() is None
    row = registry.get("ssd-mobilenet-v2-coco").describe()
    assert row["available"] is True and row["availability"] == "package"


def test_without_the_importer_it_is_unavailable_with_the_reason(opencv_without_tf_importer):
    row = registry.get(opencv_without_tf_importer).describe()
    assert row["available"] is False
    assert "readNetFromTensorflow" in row["availability_detail"] and "OpenCV 4" in row["availability_detail"]
    with pytest.raises(ModelUnavailable) as info:
        registry.load(opencv_without_tf_importer)
    assert info.value.status == 503 and "OpenCV 5" in info.value.message
    from vitrine.predict.detector import load_detector

    with pytest.raises(ModelUnavailable):
        load_detector(opencv_without_tf_importer)


def make_spec(name: str, loader, availability) -> registry.ModelSpec:
    """A model registered for one test (the built-ins first, so that they are not shadowed)."""
    from vitrine.models.base import ModelCard

    card = ModelCard(summary="test", license="-", languages=(), reference="-", notes="")
    spec = registry.ModelSpec(
        name=name, task="detection", source="package", card=card, loader=loader, availability=availability
    )
    registry.list_models()
    return registry.register(spec)


def test_an_unexpected_loader_failure_is_reported_not_raised():
    """A loader that dies with a non-vitrine exception (a library of the wrong version) becomes a
    ModelUnavailable naming the cause, and the listing says so from then on."""

    def broken_loader(weights=None, device=None, **_):
        raise AttributeError("module 'somelib' has no attribute 'gone'")

    spec = make_spec(
        "test-broken-loader",
        broken_loader,
        lambda weights=None, probe_hub=False, **_: registry.Availability(True, "package", "test"),
    )
    try:
        assert registry.get(spec.name).describe()["available"] is True
        with pytest.raises(ModelUnavailable) as info:
            registry.load(spec.name)
        assert "AttributeError" in info.value.message and "somelib" in info.value.message
        row = registry.get(spec.name).describe()
        assert row["available"] is False and "somelib" in row["availability_detail"]
    finally:
        registry.unregister(spec.name)


def test_an_availability_check_that_raises_reads_unavailable():
    def check(weights=None, probe_hub=False, **_):
        raise ImportError("libGL.so.1: cannot open shared object file")

    spec = make_spec("test-broken-check", lambda weights=None, device=None, **_: None, check)
    try:
        row = registry.get(spec.name).describe()
        assert row["available"] is False and "libGL" in row["availability_detail"]
    finally:
        registry.unregister(spec.name)


def test_a_load_with_other_weights_does_not_clear_the_default_failure():
    """The listing reports whether the model's own weights load: a load from a local file that works
    says nothing about them."""

    def loader(weights=None, device=None, **_):
        if weights is None:
            raise ImportError("libsimulated.so.1: cannot open shared object file")
        return object()

    spec = make_spec(
        "test-default-fails", loader, lambda weights=None, probe_hub=False, **_: registry.Availability(True, "x", "")
    )
    try:
        with pytest.raises(ModelUnavailable):
            registry.load(spec.name)
        registry.load(spec.name, weights="local.pt")
        assert registry.get(spec.name).describe()["available"] is False
    finally:
        registry.unregister(spec.name)
