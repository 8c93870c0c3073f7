"""Near-duplicates by perceptual signature: a resized, re-encoded, slightly cropped or brightened
copy of an image, within a split or across splits (where it leaks: a test image the model has
seen in training inflates the test accuracy).

The signature is the perceptual hash's own measurement before it is rounded to bits, per colour
channel: each channel brought to 32x32 (area average), its 2-D DCT (scipy.fft), the 8x8 block of
lowest frequencies without the mean (63 numbers a channel), all scaled to unit length so that
brightness does not count. Two images are near-copies when their signatures are within THRESHOLD
(Euclidean). imagehash's phash keeps only the 64 signs of the grey block against their median: on
64 px colour objects, its Hamming threshold that found 96% of 100 planted copies in 2,100 images
paired distinct images as often (precision 0.34), where this signature found 98% at precision 0.99
(benchmarks/bench_near_duplicates.py prints both, set by set; docs/performance.md has the table).
Small greyscale sets are where the signature alone fails: distinct digits (8x8 drawings) are as
close to each other as a digit to its own near-copy, so on digits its pairs are mostly look-alikes.
Each pair found gets a second look that sets aside look-alikes the signature cannot tell from
copies. Colour: the two images' correlation at 32x32 over small shifts (SECOND_LOOK; make_shapes'
shapes: precision 0.71 -> 0.92). Greyscale, where that separated nothing (distinct digits correlate
as copies do): the correlation after aligning one image on the other (zoom and sub-pixel shift,
found by gradient steps: registered_correlation). A copy aligns almost exactly (0.999 and more on
digits), a look-alike does not (at most 0.998), so on digits-sized sets precision rose from 0.02 to
0.99-1.00 at recall 0.98-1.00. Grey pictures with texture (photos) align less well, so the grey
threshold is measured on the data: what LOOK_KEEPS of its self-test copies score, at most GREY_LOOK.

How much to trust the pairs found is measured on the data itself: SELF_TEST of its images get a
near-copy each (near_copy: resized, cropped, brightened, JPEG re-encoded, as the benchmark plants
them; in the fit the signatures are of, a folder's crop fit under --resize trim or pad, whose black
bars would move with a copy's cut), and their signatures' distances to the originals show how close
a copy lies on this data.
Half of the copies within THRESHOLD lie below their median distance; look-alikes rarely do, so
twice the share of the pairs found below that median estimates the share that are copies
(`copies_share`), and the share of the copies within THRESHOLD that the second look keeps is the
check's recall there (`copies_found`). Against 100 planted copies in 2,000 images the estimate of the share read 0.02
where the true precision was 0.02 (digits), 0.04 against 0.02 (MNIST-like), 0.61 against 0.58
(28 px grey objects), 1.00 against 0.99 (64 px colour objects); the recall 0.20 against 0.20 on
the benchmark's patterns (stripes alias at 32 px), 0.93-1.00 against 0.98-1.00 elsewhere
(docs/performance.md, "Near-duplicates"). data_prep words its message by them.

Indexed, not all pairs: FAISS's HNSW graph (faiss-cpu) gives each image its 32 nearest signatures
in about log N steps, and those within THRESHOLD are its near-copies. scikit-learn's exact trees
were measured first: in the 16 to 189 dimensions a signature needs, a KDTree's radius search grew
as N^2 (1.2, 4.6 and 19.1 s at 12,500, 25,000 and 50,000 colour objects) where HNSW took 0.8, 1.9
and 4.6 s. Against all pairs of those 50,000 (blocked matrix products, 43 s), 32 neighbours found
all 1,261 pairs and nothing else; 16 missed 21, in groups of more than 16 look-alikes
(benchmarks/bench_near_duplicates.py cost prints its own comparison).
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

# Euclidean distance between unit signatures (0: the same picture, up to 2). Chosen on planted
# copies (resized 0.8-1.2x, JPEG 60-95, cropped up to 5%, brightness +-10%): the smallest threshold
# measured that found at least 95% of them on 64 px colour objects with 1,050 and 2,100 images
# (0.25 found 94% and 95%; 0.30 finds 98-100% at precision 0.99-1.00);
# docs/performance.md, "Near-duplicates", has the table (benchmarks/bench_near_duplicates.py).
THRESHOLD = 0.30
SIDE = 32  # the image is brought to SIDE x SIDE before the DCT (as phash does)
BLOCK = 8  # the BLOCK x BLOCK lowest frequencies make the signature
DIMENSIONS = BLOCK * BLOCK - 1  # per channel
NEIGHBOURS = 32  # each image's nearest signatures looked at (16 missed 1.7% of the pairs: groups of more)
HNSW_LINKS, HNSW_BUILD, HNSW_SEARCH = 32, 80, 64  # FAISS's HNSW graph: links per node, build and search breadth
QUERY_CHUNK = 4096  # images searched at a time: memory stays bounded
METHOD = f"DCT {BLOCK}x{BLOCK} per channel of the {SIDE}x{SIDE} image (perceptual hash before rounding), Euclidean"

# A second look at the pairs the signature finds, on colour images: both images at SIDE x SIDE
# (area average), their normalised cross-correlation, the best over shifts of up to LOOK_SHIFT pixels
# (a 5% crop moves a picture 1.6 pixels at 32), kept at SECOND_LOOK or more. Measured on planted
# copies (docs/performance.md, "Near-duplicates"): make_shapes at 64 px, precision 0.71 -> 0.92 at
# the same recall (0.99); objects at 64 px 0.99 -> 1.00. On greyscale it separates nothing (28 px
# objects 0.58 -> 0.59, digits 0.02: look-alikes correlate as copies do), so grey pairs get the
# registered look below. About 0.25 ms a pair.
SECOND_LOOK = 0.92
LOOK_SHIFT = 2
LOOK_CHUNK = 2048  # pairs looked at a time: memory stays bounded
LOOK_QUIET = 20_000  # up to this many pairs (a few seconds) the look shows no progress

# The greyscale second look (registered_correlation): both images brought to GREY_SIDE x GREY_SIDE (area
# average) and blurred by GREY_BLUR pixels (Gaussian sigma; what a copy's resampling and JPEG lose no pair
# is judged by), one zoomed by 1-1.05x and shifted by up to half a pixel at that size (a grid), then
# REGISTER_STEPS Adam steps on each pair's zoom and shift (x and y apart), either image on the other; the
# best normalised correlation. Measured on 2,000 images with 100 planted copies (docs/performance.md,
# "Near-duplicates"): planted copies score 0.9988 and more on digits and MNIST-like digits (5th
# percentile), distinct digits at most 0.9983; at GREY_LOOK precision 0.02 -> 0.99-1.00, recall 0.98-1.00
# as the signature's. 20 px with 15 steps and an 18-point grid kept that where 28 px with 30 steps and 147
# points took 15x the time (0.3 ms a pair on 2 cores). Grey photos align less well (28 px objects:
# at 0.998 recall 0.98 -> 0.72), so the threshold is what LOOK_KEEPS of the data's self-test copies
# score, never more than GREY_LOOK (look_threshold), which one of 4,054 look-alike pairs on digits reached.
GREY_SIDE, GREY_BLUR, REGISTER_STEPS = 20, 0.8, 15
GREY_LOOK = 0.998
LOOK_KEEPS = 0.98


# The self-test: images given a planted near-copy each, to measure how close a copy lies on the data
# (more changes the estimate by little: its median moves by about 1/sqrt(n) of the copies' spread).
SELF_TEST = 200
# When even the high end of the estimated share of copies (copy_test's `copies_share_high`) lies below
# this, data_prep calls the pairs mostly look-alikes (a note, not a leakage warning). The estimates
# measured: 0.02-0.04 on digit sets (true 0.02), 0.60 (0.58), 1.00. The estimate alone moves a lot
# with few pairs: 12 copies of files in 102 images, 16 draws, read 0.17 on one (and 0.50 on
# another), which would have turned the leakage warning into that note; the high end read 0.67
# there, and 1.00 on the 15 others.
MOSTLY_COPIES = 0.5
CONFIDENCE = 0.95  # of copies_share_high: a one-sided Clopper-Pearson bound
# Below this share of planted copies found, data_prep says near-copies may go unseen on the data.
FINDS_COPIES = 0.8


def signatures(images) -> np.ndarray:
    """float32 (N, 63 x channels): the signature of each uint8 image, (N, H, W) or (N, H, W, 3).
    Colour counts: on 64 px colour shapes the grey signature's precision was 0.23, the colour one's 0.94."""
    from scipy.fft import dctn

    small = small_images(images)
    channels = small.shape[1]
    block = dctn(small, axes=(2, 3), norm="ortho")[:, :, :BLOCK, :BLOCK].reshape(len(small), channels, -1)
    block = block[:, :, 1:].reshape(len(images), -1)  # the mean left out
    out = np.zeros_like(block)
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    np.divide(block, norms, out=out, where=norms > 1e-3)  # a flat image (no pattern) keeps zeros
    return out


def small_images(images, side: int = SIDE) -> np.ndarray:
    """float32 (N, channels, side, side): each uint8 image, (N, H, W) or (N, H, W, 3), brought to
    side x side by area average."""
    from PIL import Image

    images = images if len(images) else np.zeros((0, side, side), np.uint8)
    channels = 1 if np.asarray(images[0]).ndim == 2 else np.asarray(images[0]).shape[2]
    small = np.empty((len(images), channels, side, side), dtype=np.float32)
    for k, image in enumerate(images):
        picture = Image.fromarray(np.asarray(image))
        small[k] = np.asarray(picture.resize((side, side), Image.BOX), dtype=np.float32).reshape(
            side, side, channels).transpose(2, 0, 1)
    return small


def normalised_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,): each pair's normalised cross-correlation of two float stacks of images (N, C, H, W).
    A pair with a flat image (no pattern) gets 1: nothing to tell it from a copy. The greyscale
    look's measure (registered_correlation: its gradient steps go through it); `correlation` is its
    numpy twin for the colour look."""
    import torch

    a, b = a - a.mean((1, 2, 3), keepdim=True), b - b.mean((1, 2, 3), keepdim=True)
    # clamped under the root: a flat image's gradient stays finite (a NaN in the grid crashes grid_sample)
    scale = torch.sqrt(((a * a).sum((1, 2, 3)) * (b * b).sum((1, 2, 3))).clamp_min(1e-6))
    return torch.where(scale > 1e-3, (a * b).sum((1, 2, 3)) / scale, torch.ones_like(scale))


def correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """float32 (N,): for two aligned stacks of small images (small_images), each pair's normalised
    cross-correlation over their overlap, the best of the shifts of up to LOOK_SHIFT pixels either
    way. A pair without pattern in one of them (flat) gets 1: nothing to tell it from a copy. The
    numpy twin of normalised_correlation (a test holds them to the same scores): through torch, the
    colour look would add torch's import, 1.2 s, to data_prep on colour data (4.8 -> 6.6 s on 2,100
    patterns)."""
    side = first.shape[-1]
    best = np.full(len(first), -1.0, np.float32)
    for dy in range(-LOOK_SHIFT, LOOK_SHIFT + 1):
        for dx in range(-LOOK_SHIFT, LOOK_SHIFT + 1):
            a = first[:, :, max(0, dy):side + min(0, dy), max(0, dx):side + min(0, dx)]
            b = second[:, :, max(0, -dy):side + min(0, -dy), max(0, -dx):side + min(0, -dx)]
            a = a - a.mean(axis=(1, 2, 3), keepdims=True)
            b = b - b.mean(axis=(1, 2, 3), keepdims=True)
            scale = np.sqrt((a * a).sum(axis=(1, 2, 3)) * (b * b).sum(axis=(1, 2, 3)))
            value = np.divide((a * b).sum(axis=(1, 2, 3)), scale, out=np.ones_like(scale), where=scale > 1e-3)
            best = np.maximum(best, value)
    return best


def registered_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """float32 (N,): for two aligned stacks of uint8 greyscale images (N, H, W), each pair's normalised
    correlation after the best alignment of one on the other (zoom and shift, see GREY_SIDE), the
    better of the two ways round."""
    import torch
    import torch.nn.functional as F

    def blurred(images: np.ndarray) -> torch.Tensor:  # two 1-D Gaussian passes: torchvision's gaussian_blur
        # would add its 1.5 s import to data_prep
        radius = int(np.ceil(2.5 * GREY_BLUR))
        taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * GREY_BLUR ** 2))
        taps = taps / taps.sum()
        x = torch.from_numpy(small_images(images, GREY_SIDE))
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
        return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))

    searched = torch.tensor([[0.9, 0.9, -2.0, -2.0], [1.15, 1.15, 2.0, 2.0]])  # zoom x, y and shift x, y: at most
    centres = (2 * torch.arange(GREY_SIDE, dtype=torch.float32) + 1) / GREY_SIDE - 1  # grid_sample's pixel centres

    def warped(image: torch.Tensor, zoom_shift: torch.Tensor) -> torch.Tensor:  # (zoom x, zoom y, dx, dy) px
        # where each output pixel samples the image: zoomed about the centre, shifted (F.affine_grid's
        # result for this diagonal transform, built directly: affine_grid took 1 s of the look on digits)
        x = centres[None, :] / zoom_shift[:, :1] + zoom_shift[:, 2:3] * 2 / GREY_SIDE
        y = centres[None, :] / zoom_shift[:, 1:2] + zoom_shift[:, 3:4] * 2 / GREY_SIDE
        grid = torch.stack(torch.broadcast_tensors(x[:, None, :], y[:, :, None]), dim=-1)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def aligned(moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        best, start = torch.full((len(moving),), -2.0), torch.zeros(len(moving), 4)
        for zoom in (1.0, 1.05):  # a copy shows up to 5% less of the picture
            for dy in (-0.5, 0.0, 0.5):
                for dx in (-0.5, 0.0, 0.5):
                    guess = torch.tensor([zoom, zoom, dx, dy]).expand(len(moving), 4)
                    score = normalised_correlation(warped(moving, guess), fixed)
                    better = score > best
                    best, start[better] = torch.where(better, score, best), guess[better]
        # Adam's steps (rate 0.01, betas 0.9 and 0.999), written out: torch.optim's first use imports
        # torch._dynamo, 2 s of data_prep's 5 on digits
        zoom_shift, mean, square = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
        for step in range(1, REGISTER_STEPS + 1):
            zoom_shift.requires_grad_(True)
            loss = -normalised_correlation(warped(moving, zoom_shift), fixed).sum()
            gradient, = torch.autograd.grad(loss, zoom_shift)
            mean, square = 0.9 * mean + 0.1 * gradient, 0.999 * square + 0.001 * gradient ** 2
            with torch.no_grad():
                zoom_shift = zoom_shift - 0.01 * (mean / (1 - 0.9 ** step)) / (
                    (square / (1 - 0.999 ** step)).sqrt() + 1e-8)
                zoom_shift = torch.maximum(torch.minimum(zoom_shift, searched[1]), searched[0])
        with torch.no_grad():
            return torch.maximum(best, normalised_correlation(warped(moving, zoom_shift), fixed))

    a, b = blurred(first), blurred(second)
    return torch.maximum(aligned(a, b), aligned(b, a)).numpy()


def look_scores(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """float32 (N,): the second look's score of each pair of uint8 images: colour `correlation` at
    SIDE, greyscale `registered_correlation`."""
    if np.asarray(first).ndim == 4:
        return correlation(small_images(first), small_images(second))
    return registered_correlation(first, second)


def look_threshold(copy_scores: np.ndarray, colour: bool) -> float:
    """The score the second look keeps a pair at: colour SECOND_LOOK; greyscale what LOOK_KEEPS of
    planted copies of the data's images score against their originals (`copy_scores`), at most GREY_LOOK."""
    if colour or not len(copy_scores):
        return SECOND_LOOK if colour else GREY_LOOK
    return round(min(GREY_LOOK, float(np.quantile(copy_scores, 1 - LOOK_KEEPS))), 4)


def second_look(count: int, pixels: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
                threshold: float) -> np.ndarray:
    """Which of `count` pairs the second look keeps at `threshold`; `pixels(start, stop)`: the uint8
    images of pairs start..stop-1, (first images, second images)."""
    from app.progress import progress

    keep = np.ones(count, dtype=bool)
    chunks = range(0, count, LOOK_CHUNK)
    if count > LOOK_QUIET:  # minutes on a large greyscale set (0.3 ms a pair on 2 cores): say so
        chunks = progress(chunks, len(chunks), f"second look at {count:,} near-duplicate pairs", unit="chunks")
    for start in chunks:
        stop = min(count, start + LOOK_CHUNK)
        first, second = pixels(start, stop)
        keep[start:stop] = look_scores(first, second) >= threshold
    return keep


def near_copy(image: np.ndarray, rng: random.Random) -> np.ndarray:
    """A near-copy of a uint8 image, (H, W) or (H, W, 3), at its size: resized 0.8-1.2x, cropped by up
    to 5% of each side's length, brightened or darkened by up to 10%, JPEG re-encoded at quality
    60-95, and brought back to the image's size by --resize crop (its aspect is within 5% of the
    image's, so crop cuts at most that; a padded or trimmed image's black border moves with the cut)."""
    from PIL import Image, ImageEnhance

    from app.data.image_files import fit_image

    picture = Image.fromarray(image)
    scale = rng.uniform(0.8, 1.2)
    picture = picture.resize((max(8, round(picture.width * scale)), max(8, round(picture.height * scale))),
                             Image.BILINEAR)
    cut_w, cut_h = rng.uniform(0, 0.05) * picture.width, rng.uniform(0, 0.05) * picture.height
    left, top = rng.uniform(0, cut_w), rng.uniform(0, cut_h)
    picture = picture.crop((round(left), round(top), round(picture.width - (cut_w - left)),
                            round(picture.height - (cut_h - top))))
    picture = ImageEnhance.Brightness(picture).enhance(rng.uniform(0.9, 1.1))
    encoded = io.BytesIO()
    picture.save(encoded, "JPEG", quality=rng.randint(60, 95))
    encoded.seek(0)
    return fit_image(Image.open(encoded), 1 if image.ndim == 2 else 3, image.shape[:2])


def planted_copies(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """A near-copy (near_copy) of each uint8 image."""
    rng = random.Random(seed)
    return np.stack([near_copy(np.asarray(image), rng) for image in images])


def copy_distances(images: np.ndarray, seed: int = 0, copies: np.ndarray | None = None) -> np.ndarray:
    """float32 (N,): each image's signature distance to a near-copy of it (`copies`, else planted_copies)."""
    copies = planted_copies(images, seed) if copies is None else copies
    return np.linalg.norm(signatures(copies) - signatures(images), axis=1).astype(np.float32)


@dataclass
class CopyLook:
    """What planted copies of some of the data's images say of the second look there: the threshold
    it keeps a pair at (look_threshold) and which of the copies it keeps (`kept`)."""

    threshold: float
    kept: np.ndarray

    @classmethod
    def of(cls, originals: np.ndarray, copies: np.ndarray) -> "CopyLook":
        scores = look_scores(originals, copies)
        threshold = look_threshold(scores, colour=np.asarray(originals).ndim == 4)
        return cls(threshold=threshold, kept=scores >= threshold)


def copy_test(found: np.ndarray, copies: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """What planted copies on the same data (`copies`: their distances) say of the check there:
    `copies_found`, the share of them within the threshold (the check's recall on this data);
    `copy_distance`, the median distance of those found; `copies_share`, the estimated share of the
    `found` pair distances that are copies. The copies found lie at or below their median at a known
    rate (about half); look-alikes rarely come that close, so the found pairs at or below it, over
    that rate, estimate the copies among them (None without a pair, or without a copy found), and
    `copies_share_high` is that estimate's high end: the binomial bound (CONFIDENCE) on the share of
    pairs at or below the median, over the same rate."""
    from scipy.stats import beta

    within = copies[copies <= threshold]
    out = {"copies_found": round(float(len(within) / len(copies)), 3) if len(copies) else None,
           "copy_distance": round(float(np.median(within)), 4) if len(within) else None, "copies_share": None,
           "copies_share_high": None}
    if len(found) and len(within):
        rate = float(np.mean(within <= out["copy_distance"]))
        below = int(np.sum(found <= out["copy_distance"]))
        high = 1.0 if below == len(found) else float(beta.ppf(CONFIDENCE, below + 1, len(found) - below))
        out["copies_share"] = round(min(1.0, below / len(found) / rate), 3)
        out["copies_share_high"] = round(min(1.0, high / rate), 3)
    return out


def near_pairs(signature: np.ndarray, threshold: float = THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, distance): the pairs of rows within `threshold`, first < second, sorted:
    each row's NEIGHBOURS nearest by FAISS's HNSW graph, kept when within the threshold."""
    import faiss

    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if len(signature) < 2:
        return empty
    signature = np.ascontiguousarray(signature, dtype=np.float32)
    index = faiss.IndexHNSWFlat(signature.shape[1], HNSW_LINKS)
    index.hnsw.efConstruction, index.hnsw.efSearch = HNSW_BUILD, HNSW_SEARCH
    index.add(signature)
    neighbours = min(NEIGHBOURS + 1, len(signature))  # the row itself is among its nearest
    found = []
    for start in range(0, len(signature), QUERY_CHUNK):
        squared, near = index.search(signature[start:start + QUERY_CHUNK], neighbours)
        first = np.repeat(np.arange(start, start + len(near)), neighbours)
        second, distance = near.ravel().astype(np.int64), np.sqrt(np.maximum(squared.ravel(), 0))
        keep = (second >= 0) & (first != second) & (distance <= threshold)
        a, b = np.minimum(first[keep], second[keep]), np.maximum(first[keep], second[keep])
        found.append((a, b, distance[keep]))
    first, second, distance = (np.concatenate(parts) for parts in zip(*found))
    order = np.lexsort((second, first))
    first, second, distance = first[order], second[order], distance[order]
    unique = np.ones(len(first), dtype=bool)  # a pair found from both of its rows is kept once
    unique[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[unique], second[unique], distance[unique].astype(np.float32)


def groups(count: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Each image's group: images joined by a chain of near pairs share one (scipy's components)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def rows_look_threshold(count: int, images: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> float:
    """The second look's threshold on `count` rows (`images(rows)`: their uint8 images): colour
    SECOND_LOOK, fixed, so no copies are planted for it; greyscale from planted copies of SELF_TEST
    rows drawn at random (CopyLook)."""
    rows = np.sort(np.random.default_rng(seed).choice(count, min(SELF_TEST, count), replace=False))
    if np.asarray(images(rows[:1])).ndim == 4:
        return look_threshold(np.zeros(0), colour=True)
    originals = images(rows)
    return CopyLook.of(originals, planted_copies(originals, seed)).threshold


def looked_again(first: np.ndarray, second: np.ndarray, images: Callable[[np.ndarray], np.ndarray], count: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of rows (of `count`) the second look keeps, where `images(rows)` gives the rows' uint8
    images; its threshold as rows_look_threshold measures it."""
    if not len(first):
        return first, second

    def pixels(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        rows, at = np.unique(np.concatenate([first[start:stop], second[start:stop]]), return_inverse=True)
        read = images(rows)[at]  # each image read once, however many pairs of the chunk it is in
        return read[:stop - start], read[stop - start:]

    keep = second_look(len(first), pixels, rows_look_threshold(count, images))
    return first[keep], second[keep]


def keep_one_per_group(count: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A mask keeping the first image (lowest position) of each group of near-copies."""
    group = groups(count, first, second)
    _, firsts = np.unique(group, return_index=True)
    keep = np.zeros(count, dtype=bool)
    keep[firsts] = True
    return keep


@dataclass
class NearDuplicates:
    """The near pairs of a written split, as positions within their splits."""

    threshold: float
    pairs: list[tuple[str, int, str, int, float]] = field(default_factory=list)  # split, index, split, index, distance
    groups: int = 0  # groups of two or more images
    images_in_groups: int = 0
    removed: int = 0  # --dedup near: images left out before the split
    second_look: float | None = None  # the look's score a pair was confirmed at (colour SECOND_LOOK, grey measured)
    unconfirmed: int = 0  # pairs within the threshold the second look set aside (look-alikes)
    self_test: dict = field(default_factory=dict)  # what planted copies of SELF_TEST of its images say (measured)

    @classmethod
    def of_splits(cls, signatures_by_split: dict[str, np.ndarray], threshold: float = THRESHOLD,
                  removed: int = 0) -> "NearDuplicates":
        names = list(signatures_by_split)
        sizes = [len(signatures_by_split[s]) for s in names]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        filled = [signatures_by_split[s] for s in names if len(signatures_by_split[s])]
        whole = np.concatenate(filled) if filled else np.zeros((0, DIMENSIONS), np.float32)
        first, second, distance = near_pairs(whole.astype(np.float32), threshold)

        split_of = np.asarray(names, dtype=object)
        in_a, in_b = np.searchsorted(starts, first, side="right") - 1, np.searchsorted(starts, second, side="right") - 1
        pairs = list(zip(split_of[in_a].tolist(), (first - starts[in_a]).tolist(), split_of[in_b].tolist(),
                         (second - starts[in_b]).tolist(), np.round(distance.astype(np.float64), 4).tolist()))
        return cls(threshold=threshold, pairs=pairs, removed=removed)._counted()

    def _counted(self) -> "NearDuplicates":
        """The groups its pairs make, and the images in them."""
        nodes: dict[tuple[str, int], int] = {}
        for a, i, b, j, _ in self.pairs:
            nodes.setdefault((a, i), len(nodes))
            nodes.setdefault((b, j), len(nodes))
        first = np.array([nodes[(a, i)] for a, i, _, _, _ in self.pairs], dtype=np.int64)
        second = np.array([nodes[(b, j)] for _, _, b, j, _ in self.pairs], dtype=np.int64)
        self.groups = int(len(np.unique(groups(len(nodes), first, second)))) if nodes else 0
        self.images_in_groups = len(nodes)
        return self

    def checked(self, images: Callable[[str, np.ndarray], np.ndarray], sizes: dict[str, int],
                seed: int = 0) -> "NearDuplicates":
        """Its pairs after the second look, and `self_test` measured. SELF_TEST of the split's images,
        drawn at random from all splits, each get a planted near-copy: their look scores set the look's
        threshold (CopyLook), and copy_test says what they show of the check (a copy the look sets aside
        counts as not found). `images(split, positions)`: the uint8 images the signatures were taken
        of (a folder's crop fit where the split holds a bordered fit: the copies planted and the pairs
        looked at are then what was signed), read one call a split for a chunk of pairs (a referenced
        split fetches them together); `sizes`: each split's image count."""
        total = sum(sizes.values())
        if not total:
            return self
        drawn = np.sort(np.random.default_rng(seed).choice(total, min(SELF_TEST, total), replace=False))
        starts = np.concatenate([[0], np.cumsum(list(sizes.values()))])
        sample = []
        for k, name in enumerate(sizes):
            positions = drawn[(drawn >= starts[k]) & (drawn < starts[k + 1])] - starts[k]
            if len(positions):
                sample.extend(images(name, positions.astype(np.int64)))
        originals = np.stack(sample)
        copies = planted_copies(originals, seed)
        look = CopyLook.of(originals, copies)
        confirmed = self._confirmed(images, look.threshold)
        distances = np.where(look.kept, copy_distances(originals, copies=copies), np.inf)
        found = np.array([distance for *_, distance in confirmed.pairs], np.float32)
        return replace(confirmed, self_test={"images": len(originals), **copy_test(found, distances, self.threshold)})

    def _confirmed(self, images: Callable[[str, np.ndarray], np.ndarray], threshold: float) -> "NearDuplicates":
        """Its pairs the second look keeps at `threshold` (`images` as in `checked`)."""
        def pixels(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
            chunk = self.pairs[start:stop]
            wanted = [(a, i) for a, i, _, _, _ in chunk] + [(b, j) for _, _, b, j, _ in chunk]
            out = None
            for name in sorted({split for split, _ in wanted}):
                rows = [n for n, (split, _) in enumerate(wanted) if split == name]
                positions, at = np.unique([wanted[n][1] for n in rows], return_inverse=True)
                read = images(name, positions.astype(np.int64))[at]  # each image read once a chunk
                out = np.empty((len(wanted), *read.shape[1:]), read.dtype) if out is None else out
                out[rows] = read
            return out[:len(chunk)], out[len(chunk):]

        keep = second_look(len(self.pairs), pixels, threshold)
        kept = [pair for pair, kept in zip(self.pairs, keep.tolist()) if kept]
        return NearDuplicates(threshold=self.threshold, pairs=kept, removed=self.removed, second_look=threshold,
                              unconfirmed=len(self.pairs) - len(kept))._counted()

    def by_splits(self) -> dict[str, int]:
        """Pair counts by the splits they join: 'train/test', 'val/val', ..."""
        counts: dict[str, int] = {}
        for split_a, _, split_b, _, _ in self.pairs:
            key = f"{split_a}/{split_b}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def across(self, a: str, b: str) -> int:
        return sum(1 for s, _, t, _, _ in self.pairs if {s, t} == {a, b} and s != t)

    def metadata(self) -> dict:
        return {"method": METHOD, "threshold": self.threshold, "pairs": len(self.pairs), "groups": self.groups,
                "images_in_groups": self.images_in_groups, "by_splits": self.by_splits(), "removed": self.removed,
                "second_look": self.second_look, "unconfirmed": self.unconfirmed,
                "self_test": self.self_test}
