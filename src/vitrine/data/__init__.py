"""Labelled classification datasets: import (ImageFolder, CSV, collection), split, statistics."""

from vitrine.data.dataset import SPLITS, ClassificationDataset, RowProblem, Sample
from vitrine.data.fashion_mnist import FASHION_MNIST_CLASSES, export_fashion_mnist, read_idx
from vitrine.data.importers import (
    from_collection,
    from_csv,
    from_imagefolder,
    import_dataset,
    load_dataset,
    to_csv,
    to_imagefolder,
)
from vitrine.data.split import assign_splits
from vitrine.data.stats import dataset_stats, sample_paths

__all__ = [
    "FASHION_MNIST_CLASSES",
    "SPLITS",
    "ClassificationDataset",
    "RowProblem",
    "Sample",
    "assign_splits",
    "dataset_stats",
    "export_fashion_mnist",
    "from_collection",
    "from_csv",
    "from_imagefolder",
    "import_dataset",
    "load_dataset",
    "read_idx",
    "sample_paths",
    "to_csv",
    "to_imagefolder",
]
