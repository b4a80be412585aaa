"""Build the demo project from real photos that ship inside scikit-image and scikit-learn.

No download: these photos are part of the installed packages. The ontology is written in French
(keywords) with English descriptions, so the demo shows accents working with the offline model.
"""

from __future__ import annotations

from pathlib import Path

from vitrine.collection.layout import init_project

# folder/file name -> skimage.data function (photos only; synthetic test patterns are left out)
SKIMAGE_PHOTOS = {
    "animaux/chat.jpg": "chelsea",
    "animaux/cheval.png": "horse",
    "espace/fusée.jpg": "rocket",
    "espace/astronaute.jpg": "astronaut",
    "espace/champ-profond-hubble.jpg": "hubble_deep_field",
    "espace/lune.png": "moon",
    "objets/café.jpg": "coffee",
    "objets/horloge.png": "clock",
    "objets/pièces.png": "coins",
    "objets/photographe.png": "camera",
    "objets/moto.jpg": "stereo_motorcycle",
    "textures/brique.png": "brick",
    "textures/herbe.png": "grass",
    "textures/gravier.png": "gravel",
    "science/rétine.jpg": "retina",
    "science/immunohistochimie.jpg": "immunohistochemistry",
    "documents/page.png": "page",
    "documents/texte.png": "text",
}
# the demo indexes with the offline model so that it runs with no model hub; its record says so
DEMO_MODEL = "offline-concepts"
DEMO_MODEL_REASON = "the demo's model: it works offline, with no model hub"

SKLEARN_PHOTOS = {"lieux/temple-chine.jpg": "china.jpg", "lieux/fleur.jpg": "flower.jpg"}

ONTOLOGY = {
    "Chat": "a cat",
    "Cheval": "a horse",
    "Fusée": "a rocket launch",
    "Astronaute": "an astronaut in a space suit",
    "Espace": "stars and galaxies in outer space",
    "Café": "a cup of coffee",
    "Horloge": "a clock",
    "Pièces de monnaie": "coins",
    "Moto": "a motorcycle",
    "Temple": "a temple in China",
    "Fleur": "a flower",
    "Texte imprimé": "a page of printed text",
}


def _to_pil(array):
    import numpy as np
    from PIL import Image

    if isinstance(array, tuple):
        array = array[0]
    if array.dtype == bool:
        array = (~array).astype(np.uint8) * 255  # skimage's horse: True is the silhouette
    img = Image.fromarray(array)
    return img.convert("RGB") if img.mode not in ("RGB", "L") else img


def build_demo(root: str | Path, name: str = "demo-photos") -> Path:
    """Create ``<root>/<name>`` with images/<subfolders>/ and a French ontology; returns its path."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    project_dir = Path(root) / name
    paths = init_project(project_dir, keywords=ONTOLOGY)
    for rel, func in SKIMAGE_PHOTOS.items():
        target = paths.images_dir / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _to_pil(getattr(data, func)()).save(target, quality=92)
    samples = load_sample_images()
    for rel, fname in SKLEARN_PHOTOS.items():
        target = paths.images_dir / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            array = samples.images[samples.filenames.index(next(f for f in samples.filenames if f.endswith(fname)))]
            _to_pil(array).save(target, quality=92)
    return project_dir
