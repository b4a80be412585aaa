"""Where an embedding run's time goes: decode (thread time), waiting for decode, model, store,
measured by the pipeline and shown in the index report."""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

from vitrine.embed.pipeline import EmbedItem, StageTimes, embed_items
from vitrine.models.base import Spaces


class SlowModel:
    """A stand-in embedder whose model step takes a known time."""

    name = "slow"
    spaces = Spaces(dims={"s": 4}, text_space=None, image_space="s")
    batch_size = 2

    def preprocess(self, image):
        return torch.zeros(3, 8, 8)

    def embed_batch(self, batch):
        time.sleep(0.05)
        v = np.ones((len(batch), 4), np.float32)
        return {"s": v / 2.0}


def test_stage_times_add_up(tmp_path):
    items = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (32, 24), (i * 10, 0, 0)).save(path)
        items.append(EmbedItem(i, path, path.name))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    items.append(EmbedItem(99, bad, bad.name))
    stored, failed = [], []

    def on_batch(ids, vectors, info):
        time.sleep(0.02)
        stored.extend(ids)

    def on_failure(item, why):
        failed.append(item.content_id)

    times = StageTimes()
    out = embed_items(SlowModel(), items, on_batch, on_failure, workers=2, times=times)
    assert out is times and stored == list(range(6)) and failed == [99]
    assert times.workers == 2
    assert 0.15 <= times.model < 1.0  # three batches of 0.05 s
    assert 0.06 <= times.store < 1.0  # three commits of 0.02 s
    assert times.decode > 0 and times.wait >= 0
    d = times.to_dict()
    assert set(d) == {"decode_seconds", "decode_workers", "wait_seconds", "model_seconds", "store_seconds"}


def test_the_index_report_says_where_the_time_went(indexed_demo):
    import vitrine

    report = vitrine.open_project(indexed_demo).catalog.get_meta("last_index")
    stages = report["stages"]
    for key in ("load_seconds", "scan_seconds", "decode_seconds", "wait_seconds", "model_seconds", "index_seconds"):
        assert stages[key] >= 0, key
    assert stages["model_seconds"] > 0 and stages["decode_workers"] >= 1
