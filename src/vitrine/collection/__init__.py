"""A project's files: layout, ontology, image decoding and the image walk."""

from vitrine.collection.imageio import (
    SUPPORTED_SUFFIXES,
    image_info,
    make_thumbnail,
    max_file_bytes,
    max_pixels,
    open_image,
    open_image_bytes,
)
from vitrine.collection.layout import (
    Problem,
    ProjectPaths,
    discover_projects,
    init_project,
    is_project,
    project_paths,
    resolve_inside,
    validate_layout,
)
from vitrine.collection.ontology import (
    LineProblem,
    Ontology,
    OntologyCache,
    OntologyEntry,
    load_ontology,
    ontology_to_csv,
    parse_ontology,
)
from vitrine.collection.walk import FoundFile, SkippedFile, iter_images, walk_images

__all__ = [
    "SUPPORTED_SUFFIXES",
    "FoundFile",
    "LineProblem",
    "Ontology",
    "OntologyCache",
    "OntologyEntry",
    "Problem",
    "ProjectPaths",
    "SkippedFile",
    "discover_projects",
    "image_info",
    "init_project",
    "is_project",
    "iter_images",
    "load_ontology",
    "make_thumbnail",
    "max_file_bytes",
    "max_pixels",
    "ontology_to_csv",
    "open_image",
    "open_image_bytes",
    "parse_ontology",
    "project_paths",
    "resolve_inside",
    "validate_layout",
    "walk_images",
]
