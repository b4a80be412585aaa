"""The built-in models: importing this module registers each of them in :mod:`vitrine.models.registry`.

The ``vitrine.models`` package imports it first, so any import of a ``vitrine.models`` module finds
the registry filled. The registry itself imports no model (no import cycle): the model modules
import the registry and register themselves, as timm's model files do. The order below is the
order of the listings (``vitrine models``, the API's model lists). The two families
(``timm:<name>``, ``hf:<repo id>``) are not listed: they resolve names when asked for one.
"""

# isort: off
from vitrine.models.detectors import zoo  # noqa: F401  (detectors and instance segmenters)
from vitrine.models.embedders import clip  # noqa: F401  (CLIP embedders)
from vitrine.models.embedders import offline_concepts  # noqa: F401  (the offline embedder)
from vitrine.models.classifiers import backbones  # noqa: F401  (fine-tunable image classifiers)
from vitrine.models.embedders import timm_backbone  # noqa: F401  (timm:<model name>, by name)
from vitrine.models.embedders import hf_vision  # noqa: F401  (hf:<repo id>, by name)
# isort: on
