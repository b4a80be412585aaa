"""vitrine: a self-hosted vision workbench.

The Python API mirrors the CLI: open or create a project, index it, search it.

    import vitrine
    project = vitrine.open_project("my-archive")
    project.index()
    for hit in project.search("a cat", k=5).hits:
        print(hit.path, hit.score)
"""

__version__ = "0.1.0"

from vitrine.core.errors import VitrineError  # noqa: E402
from vitrine.project import CheckReport, IndexReport, Project, create_project, open_project  # noqa: E402

__all__ = ["Project", "IndexReport", "CheckReport", "open_project", "create_project", "VitrineError", "__version__"]
