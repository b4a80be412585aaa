"""Every model vitrine runs, in one registry: embedders, image classifiers, detectors.

``registry`` (name -> spec, loader, availability; imports no model), ``catalog`` (imports the
built-ins so that they register themselves; imported here, so the registry is filled whatever
module of this package is imported first), ``embedders/``, ``classifiers/``, ``detectors/``.
Nothing here imports torch at import time.
"""

from vitrine.models import catalog  # noqa: F401  (registers the built-in models)
