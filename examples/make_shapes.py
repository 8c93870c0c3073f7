"""Write a folder of coloured shapes, one sub-folder per class: a small stand-in for the photo
folders people bring (colour, mixed sizes, PNG and JPEG, some greyscale).

    python examples/make_shapes.py shapes --per-class 150
    python app/pipelines/data_prep.py --dataset imagefolder --data-dir shapes --image-size 32

Shape, colours, size, position and file size vary at random, so only the shape tells the class.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

CLASSES = ("circle", "square", "triangle", "cross")


def draw_shape(kind: str, rng: random.Random, size: tuple[int, int] | None = None, mode: str | None = None):
    """One PIL image of `kind` on a random background, of a random (or the given) size (W, H)."""
    from PIL import Image, ImageDraw

    width, height = size or (rng.randint(36, 96), rng.randint(36, 96))
    background = tuple(rng.randint(0, 255) for _ in range(3))
    # a colour far enough from the background to be seen
    while True:
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if sum(abs(a - b) for a, b in zip(colour, background)) > 200:
            break
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    side = rng.uniform(0.45, 0.8) * min(width, height)
    cx = rng.uniform(side / 2, width - side / 2)
    cy = rng.uniform(side / 2, height - side / 2)
    half = side / 2
    if kind == "circle":
        draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=colour)
    elif kind == "square":
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=colour)
    elif kind == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
    elif kind == "cross":
        bar = side / 6
        draw.rectangle((cx - half, cy - bar, cx + half, cy + bar), fill=colour)
        draw.rectangle((cx - bar, cy - half, cx + bar, cy + half), fill=colour)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return image.convert(mode) if mode else image


def write_shapes(root: Path, per_class: int, seed: int = 0) -> list[Path]:
    """per_class files in root/<shape>/: about 60% PNG, 30% JPEG, 10% greyscale PNG."""
    rng = random.Random(seed)
    written = []
    for kind in CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw = rng.random()
            image = draw_shape(kind, rng, mode="L" if draw > 0.9 else None)
            path = folder / f"{kind}_{i:04d}.{'jpg' if 0.6 <= draw <= 0.9 else 'png'}"
            image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)
            written.append(path)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="where to write the class folders")
    p.add_argument("--per-class", type=int, default=150, help="images per class")
    p.add_argument("--seed", type=int, default=0, help="seed of shapes, colours and sizes")
    args = p.parse_args()
    files = write_shapes(args.folder, args.per_class, args.seed)
    print(f"wrote {len(files)} images in {len(CLASSES)} class folders under {args.folder}")


if __name__ == "__main__":
    main()
