"""Writing data in VOC layout: annotations, images and split files.

The inverse of :mod:`helpers.voc`'s parser, for the tests and for chapter 8's pipeline
check, which builds a small VOC-layout folder from digits when the real data is absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "annotation_xml",
    "write_split",
    "write_voc_image",
]


def annotation_xml(filename: str, width: int, height: int, objects: Sequence[dict]) -> str:
    """A VOC annotation as text. Each object: name, optional difficult/truncated (0/1) and
    bbox (xmin, ymin, xmax, ymax; default: the whole image)."""
    parts = [
        "<annotation>",
        "  <folder>VOC2007</folder>",
        f"  <filename>{filename}</filename>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for obj in objects:
        x0, y0, x1, y1 = obj.get("bbox", (1, 1, width, height))
        parts += [
            "  <object>",
            f"    <name>{obj['name']}</name>",
            f"    <truncated>{int(obj.get('truncated', 0))}</truncated>",
            f"    <difficult>{int(obj.get('difficult', 0))}</difficult>",
            f"    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_voc_image(
    root: str | Path, image_id: str, pixels: np.ndarray, objects: Sequence[dict]
) -> None:
    """Save one image as ``JPEGImages/<id>.jpg`` and its annotation as ``Annotations/<id>.xml``.

    `pixels` is uint8 (H, W) greyscale or (H, W, 3) RGB.
    """
    from PIL import Image

    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
    h, w = pixels.shape[:2]
    xml = annotation_xml(f"{image_id}.jpg", w, h, objects)
    (root / "Annotations" / f"{image_id}.xml").write_text(xml)


def write_split(root: str | Path, split: str, ids: Sequence[str]) -> None:
    folder = Path(root) / "ImageSets" / "Main"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
