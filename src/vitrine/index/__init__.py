"""Vector indexes: one FAISS index per embedding space, keyed by catalog content ids."""

from vitrine.index.faiss_index import (
    EXACT_MAX,
    FORMAT_VERSION,
    SUBSET_EXACT_MAX,
    IndexFileError,
    IndexPlan,
    VectorIndex,
    choose_index_kind,
    ivf_plan,
)

__all__ = [
    "EXACT_MAX",
    "FORMAT_VERSION",
    "SUBSET_EXACT_MAX",
    "IndexFileError",
    "IndexPlan",
    "VectorIndex",
    "choose_index_kind",
    "ivf_plan",
]
