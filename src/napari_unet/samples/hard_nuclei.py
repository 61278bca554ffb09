"""Synthetic nuclei with what real fluorescence images have, for the hard benchmark.

`make_hard_nuclei` draws an image of the kind that merges touching nuclei in practice
(DSB2018-like): nuclei whose sizes vary 3x and brightness 10x, saturated clumps of 5-10
touching nuclei, some nuclei out of focus (blurred more, dimmer), an uneven background,
photon (Poisson) and read noise on a 12-bit camera that clips, and nuclei cut by the
image border. Deterministic for a given ``seed``; no downloads.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .nuclei import _smooth_noise

__all__ = ["make_hard_nuclei"]

SATURATION = 4095  # 12-bit camera: brighter pixels clip


def _clump(rng, shape, centres, sizes, n, radius):
    """Add ``n`` nuclei packed around a random point, each touching one already placed."""
    first = np.array([rng.uniform(0, s) for s in shape])
    centres.append(first)
    sizes.append(rng.uniform(*radius))
    members = [len(centres) - 1]
    for _ in range(n - 1):
        r = rng.uniform(*radius)
        for _ in range(30):
            anchor = members[rng.integers(len(members))]
            angle = rng.uniform(0, 2 * np.pi)
            c = centres[anchor] + 0.85 * (r + sizes[anchor]) * np.array([np.cos(angle),
                                                                         np.sin(angle)])
            if all(np.linalg.norm(c - c2) >= 0.8 * (r + r2) for c2, r2 in zip(centres, sizes)):
                centres.append(c)
                sizes.append(r)
                members.append(len(centres) - 1)
                break
    return members


def _scattered(rng, shape, centres, sizes, n, radius):
    """Add up to ``n`` nuclei anywhere (centres may lie just outside the image), a third
    of them allowed to touch a neighbour."""
    for _ in range(40 * n):
        if n <= 0:
            return
        r = rng.uniform(*radius)
        c = np.array([rng.uniform(-0.4 * r, s + 0.4 * r) for s in shape])
        touch = rng.random() < 0.33
        if all(np.linalg.norm(c - c2) >= (0.85 if touch else 1.2) * (r + r2)
               for c2, r2 in zip(centres, sizes)):
            centres.append(c)
            sizes.append(r)
            n -= 1


def _draw(shape, centres, sizes, rng, brightness, defocused):
    """Rasterise bent ellipses: labels (int32), in-focus and out-of-focus signal."""
    labels = np.zeros(shape, np.int32)
    sharp, soft = np.zeros(shape), np.zeros(shape)
    texture = _smooth_noise(rng, shape, 1.5)
    for i, (c, r) in enumerate(zip(centres, sizes), start=1):
        axes = r * rng.uniform(0.75, 1.3, 2)
        reach = int(np.ceil(axes.max() * 1.3)) + 2
        lo = np.maximum(np.floor(c).astype(int) - reach, 0)
        hi = np.minimum(np.floor(c).astype(int) + reach + 1, shape)
        if np.any(hi <= lo):
            continue
        gy, gx = np.meshgrid(np.arange(lo[0], hi[0]) - c[0], np.arange(lo[1], hi[1]) - c[1],
                             indexing="ij")
        t = rng.uniform(0, np.pi)
        u, v = gy * np.cos(t) + gx * np.sin(t), -gy * np.sin(t) + gx * np.cos(t)
        phi = np.arctan2(v / axes[1], u / axes[0])
        bend = 1.0 + sum(rng.uniform(0, 0.12) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
                         for k in (2, 3))
        rho = ((u / axes[0]) ** 2 + (v / axes[1]) ** 2) / bend**2
        inside = rho <= 1.0
        if not inside.any():
            continue
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
        profile = brightness[i - 1] * (1.0 - 0.3 * rho) * (0.7 + 0.6 * texture[box])
        labels[box][inside] = i
        target = soft if defocused[i - 1] else sharp
        target[box] = np.where(inside, profile, target[box])
        (sharp if defocused[i - 1] else soft)[box][inside] = 0.0  # drawn on top
    return labels, sharp, soft


def make_hard_nuclei(shape: tuple[int, int] = (256, 512), *, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A hard synthetic nuclei image (Y, X) and its instance labels.

    About a third of the area is nuclei of radius 5-15 px (3x), brightness spread 10x
    (log-uniform), 2-4 clumps of 5-10 touching nuclei per 256 x 512 px that are bright
    enough to saturate, a fifth of the nuclei out of focus (blur sigma 3 px instead of
    1.2, dimmer), an uneven background, Poisson and read noise, 12-bit clipping, and
    nuclei cut by the border. Returns ``(image uint16, labels uint16)`` (0 = background,
    1..n = nuclei), both shaped ``shape``; the same ``seed`` gives the same pair.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 64:
        raise ValueError(f"shape must be (Y, X) with sides >= 64; got {shape}.")
    rng = np.random.default_rng(seed)
    radius = (5.0, 15.0)
    area = shape[0] * shape[1]
    centres: list[np.ndarray] = []
    sizes: list[float] = []
    clumped: list[int] = []
    for _ in range(max(1, round(rng.uniform(2, 4) * area / (256 * 512)))):
        clumped += _clump(rng, shape, centres, sizes, int(rng.integers(5, 11)), radius)
    _scattered(rng, shape, centres, sizes, int(0.33 * area / (np.pi * 10.0**2)), radius)
    n = len(centres)
    brightness = np.exp(rng.uniform(np.log(0.1), np.log(1.0), n))
    brightness[clumped] = rng.uniform(1.2, 2.0, len(clumped))  # saturates after the blur
    defocused = rng.random(n) < 0.2
    defocused[clumped] = False
    brightness[defocused] *= 0.6
    labels, sharp, soft = _draw(shape, centres, sizes, rng, brightness, defocused)
    optical = ndi.gaussian_filter(sharp, 1.2) + ndi.gaussian_filter(soft, 3.0)
    ramp = np.add.reduce(np.meshgrid(*[np.linspace(0, rng.uniform(0.3, 1.0), s) for s in shape],
                                     indexing="ij")) / 2
    background = 0.04 * (0.5 + ramp + _smooth_noise(rng, shape, max(shape) / 6))
    photons = 2400.0  # per unit of signal: the clumps clip at 4095
    counts = rng.poisson((optical + background) * photons).astype(np.float64)
    counts += rng.normal(0.0, 4.0, shape) + 100.0
    kept = np.unique(labels)
    lut = np.zeros(int(labels.max()) + 1, np.uint16)
    lut[kept[kept > 0]] = np.arange(1, np.count_nonzero(kept) + 1)
    return np.clip(counts, 0, SATURATION).astype(np.uint16), lut[labels]
