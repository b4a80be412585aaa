import numpy as np
import pytest
from PIL import Image

from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample


def make_colours(root, per_class: int = 8) -> ClassificationDataset:
    """Three classes of noisy colour patches, 32 px: 6 train, 1 val, 1 test each."""
    rng = np.random.default_rng(0)
    samples = []
    for k, label in enumerate(("red", "green", "blue")):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
            pixels[8:24, 8:24, k] = 220
            Image.fromarray(pixels).save(root / label / f"{i}.png")
            split = "train" if i < per_class - 2 else ("val" if i == per_class - 2 else "test")
            samples.append(Sample(f"{label}/{i}.png", label, split))
    return ClassificationDataset("colours", root, samples)


@pytest.fixture
def sweep_ws(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    make_colours(tmp_path / "images").save(ws.dataset_dir("colours"))
    return ws
