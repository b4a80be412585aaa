"""The one speed harness: latency at batch 1 and throughput at a batch, warm-up untimed, and what
the figures depend on recorded."""

import time

import pytest

from vitrine.evaluate.speed import measure


class _Model:
    """Costs 2 ms per call plus 1 ms per image: batching pays, as it does for real models."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, batch):
        self.calls.append(len(batch))
        time.sleep(0.002 + 0.001 * len(batch))
        return [0] * len(batch)


def test_latency_and_throughput_are_measured_apart():
    model = _Model()
    report = measure(model, list(range(8)), batch_size=4, latency_images=5, warmup=1, min_seconds=1.0, max_repeats=2)
    # warm-up (one single image), 5 timed singles; warm-up (one batch of 4), then 2 passes of 2 batches
    assert model.calls == [1] * 6 + [4] + [4, 4] * 2
    assert report.latency_images == 5 and report.repeats == 2 and report.images == 8
    assert 3.0 <= report.latency_ms_min <= report.latency_ms <= report.latency_ms_max < 50
    # 8 images in 2 batches cost about 2 * (2 + 4) = 12 ms: about 670 images/s, below the 1/3 ms of batch 1
    assert report.images_per_second is not None
    assert 1000 / report.latency_ms < report.images_per_second < 8 / 0.012
    assert report.device == "cpu" and report.threads >= 1 and report.cpus >= 1


def test_either_figure_can_be_skipped():
    model = _Model()
    only_latency = measure(model, [1, 2], batch_size=0, latency_images=3, warmup=0)
    assert model.calls == [1, 1, 1] and only_latency.images_per_second is None and only_latency.repeats == 0
    model.calls.clear()
    only_batch = measure(model, [1, 2, 3], batch_size=2, latency_images=0, warmup=1, max_repeats=1)
    assert model.calls == [2, 1, 2, 1]  # warm-up: a full batch and the last, smaller one
    assert only_batch.latency_ms is None and only_batch.images_per_second > 0


def test_the_report_is_plain_data_and_refuses_no_images():
    report = measure(_Model(), [0], batch_size=1, latency_images=1, max_repeats=1)
    data = report.to_dict()
    assert set(data) >= {"latency_ms", "images_per_second", "batch_size", "device", "threads", "cpus", "load_average"}
    assert data["load_average"] is None or data["load_average"] >= 0
    with pytest.raises(ValueError, match="at least one image"):
        measure(_Model(), [])
