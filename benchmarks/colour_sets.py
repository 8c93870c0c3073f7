"""Colour image folders unlike examples/make_shapes.py's, for judging the defaults on data they
were not tuned on (bench_quality.py, bench_sweep.py). Each writes root/<class>/ files as people
bring them: 32-128 px (patterns) or 40-96 px (objects), 1 in 8 greyscale, PNG and JPEG.

- patterns: five textures (stripes, checks, dots, rings, zigzags) at random scale, angle, phase
  and colours: the class is the texture, never a colour or a place.
- objects: five shapes make_shapes does not draw (star, heart, arrow, ring, hexagon), 40-85% of
  the image, turned, on backgrounds that vary: plain, a colour gradient, or a patch of a real
  photo (scikit-learn's two sample photos), so edges of the background compete with the object's.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PATTERNS = ("stripes", "checks", "dots", "rings", "zigzag")
OBJECTS = ("star", "heart", "arrow", "ring", "hexagon")
KINDS = {"patterns": PATTERNS, "objects": OBJECTS}


def two_colours(rng: random.Random) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A colour and a second one far enough from it to be seen."""
    first = tuple(rng.randint(0, 255) for _ in range(3))
    while True:
        second = tuple(rng.randint(0, 255) for _ in range(3))
        if sum(abs(a - b) for a, b in zip(first, second)) > 200:
            return first, second


def pattern(kind: str, rng: random.Random, width: int, height: int) -> Image.Image:
    """A texture as a mask computed on the pixel grid, then coloured."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    # scale relative to the image: 3 to 8 periods across it, so a model input of 48 px still resolves it
    period = min(width, height) / rng.uniform(3, 8)
    phase = rng.uniform(0, period)
    if kind == "stripes":
        mask = ((u + phase) % period) < period / 2
    elif kind == "checks":
        mask = (((u + phase) // (period / 2)) + ((v + phase) // (period / 2))) % 2 == 0
    elif kind == "dots":
        cu, cv = (u + phase) % period - period / 2, (v + phase) % period - period / 2
        mask = cu ** 2 + cv ** 2 < (period * rng.uniform(0.2, 0.3)) ** 2
    elif kind == "rings":
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        mask = (np.hypot(x - cx, y - cy) + phase) % period < period / 2
    elif kind == "zigzag":
        wave = np.abs(((v / period) % 1.0) - 0.5) * period * 2  # a triangle wave along v
        mask = ((u + wave + phase) % period) < period / 2
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    ink, paper = two_colours(rng)
    pixels = np.where(mask[..., None], np.array(ink, np.float32), np.array(paper, np.float32))
    return Image.fromarray(pixels.astype(np.uint8))


def photo_patch(rng: random.Random, width: int, height: int) -> Image.Image:
    from sklearn.datasets import load_sample_images

    photos = photo_patch.photos = getattr(photo_patch, "photos", None) or load_sample_images().images
    photo = photos[rng.randrange(len(photos))]
    side = rng.randint(max(width, height), 300)
    top, left = rng.randint(0, photo.shape[0] - side), rng.randint(0, photo.shape[1] - side)
    return Image.fromarray(photo[top:top + side, left:left + side]).resize((width, height))


def background(rng: random.Random, width: int, height: int) -> Image.Image:
    choice = rng.random()
    if choice < 0.3:
        return Image.new("RGB", (width, height), two_colours(rng)[0])
    if choice < 0.6:
        a, b = (np.array(c, np.float32) for c in two_colours(rng))
        t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
        image = Image.fromarray((a + (b - a) * t).repeat(height, 0).astype(np.uint8))
        return image.rotate(rng.uniform(0, 360), expand=False, fillcolor=tuple(int(c) for c in a))
    return photo_patch(rng, width, height)


def shape_points(kind: str, rng: random.Random) -> list[list[tuple[float, float]]]:
    """Polygons in unit coordinates (-1..1) whose union is the shape; a ring is two (outer, hole)."""
    if kind == "star":
        return [[(math.cos(a) * r, math.sin(a) * r) for i in range(10)
                 for a, r in [(math.pi / 5 * i - math.pi / 2, 1.0 if i % 2 == 0 else 0.42)]]]
    if kind == "hexagon":
        return [[(math.cos(math.pi / 3 * i), math.sin(math.pi / 3 * i)) for i in range(6)]]
    if kind == "arrow":
        return [[(-1, -0.3), (0.2, -0.3), (0.2, -0.75), (1, 0), (0.2, 0.75), (0.2, 0.3), (-1, 0.3)]]
    if kind == "heart":
        return [[(16 * math.sin(t) ** 3 / 17, -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t)
                                                 - math.cos(4 * t)) / 17) for t in np.linspace(0, 2 * math.pi, 60)]]
    if kind == "ring":
        circle = [(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, 48)]
        return [circle, [(x * 0.55, y * 0.55) for x, y in circle]]
    raise ValueError(f"unknown object {kind!r}")


def draw_object(kind: str, rng: random.Random, width: int, height: int) -> Image.Image:
    image = background(rng, width, height).convert("RGB")
    # the object's colour far from the background's mean colour
    mean = tuple(int(c) for c in np.asarray(image).reshape(-1, 3).mean(0))
    while True:
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if sum(abs(a - b) for a, b in zip(colour, mean)) > 200:
            break
    half = rng.uniform(0.4, 0.85) * min(width, height) / 2
    cx, cy = rng.uniform(half, width - half), rng.uniform(half, height - half)
    turn = rng.uniform(0, 2 * math.pi) if kind != "heart" else rng.uniform(-0.4, 0.4)
    c, s = math.cos(turn), math.sin(turn)
    polygons = [[(cx + half * (x * c - y * s), cy + half * (x * s + y * c)) for x, y in poly]
                for poly in shape_points(kind, rng)]
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon(polygons[0], fill=255)
    for hole in polygons[1:]:
        draw.polygon(hole, fill=0)
    image.paste(Image.new("RGB", (width, height), colour), mask=mask)
    return image


def write(kind: str, root: Path, per_class: int, seed: int = 0, first: int = 0) -> int:
    """per_class files of each class of `kind` under root/<class>/, numbered from `first`; returns
    the count written."""
    rng = random.Random(seed)
    classes = KINDS[kind]
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            if kind == "patterns":
                image = pattern(name, rng, rng.randint(32, 128), rng.randint(32, 128))
            else:
                image = draw_object(name, rng, rng.randint(40, 96), rng.randint(40, 96))
            draw = rng.random()
            if draw > 7 / 8:
                image = image.convert("L")
            path = folder / f"{name}_{first + i:04d}.{'jpg' if draw < 0.35 else 'png'}"
            image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)
    return per_class * len(classes)
