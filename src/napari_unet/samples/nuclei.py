"""Synthetic fluorescence-microscopy nuclei with ground truth; no downloads.

`make_nuclei` draws elliptical nuclei of varying size, brightness and texture,
some touching, on an uneven background, then blurs (optical PSF) and adds
photon (Poisson) and camera (Gaussian) noise. `make_nuclei_stack` does the same
in 3D with ellipsoids. Both are deterministic for a given ``seed``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    field -= field.min()
    return field / max(field.max(), 1e-12)


def _place_centres(rng, shape, n, radii, touch_fraction):
    """Rejection-sample centres; about ``touch_fraction`` of pairs are allowed to touch."""
    centres, sizes = [], []
    tries = 0
    while len(centres) < n and tries < 200 * n:
        tries += 1
        r = rng.uniform(*radii)
        c = np.array([rng.uniform(r * 0.5, s - r * 0.5) for s in shape])
        ok = True
        for c2, r2 in zip(centres, sizes):
            d = np.linalg.norm(c - c2)
            limit = 0.8 * (r + r2) if rng.random() < touch_fraction else 1.15 * (r + r2)
            if d < limit:
                ok = False
                break
        if ok:
            centres.append(c)
            sizes.append(r)
    return centres, sizes


def _render(shape, centres, sizes, rng, anisotropy=None, wobble=0.0, elongation=(0.7, 1.3)):
    """Rasterise ellipses/ellipsoids; returns (labels int32, intensity float).

    ``wobble`` > 0 bends 2D outlines by random 2nd-4th angular harmonics of that
    relative amplitude (kidney and bean shapes); ``elongation`` is the range of
    the per-axis stretch of each nucleus."""
    ndim = len(shape)
    labels = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float64)
    texture = _smooth_noise(rng, shape, 1.5)
    for i, (c, r) in enumerate(zip(centres, sizes), start=1):
        axes = r * rng.uniform(*elongation, ndim)
        if anisotropy is not None:
            axes[0] *= anisotropy
        lo = np.maximum(np.floor(c - axes.max() - 1).astype(int), 0)
        hi = np.minimum(np.ceil(c + axes.max() + 2).astype(int), shape)
        grids = np.meshgrid(*[np.arange(a, b) - cc for a, b, cc in zip(lo, hi, c)], indexing="ij")
        if ndim == 2:
            t = rng.uniform(0, np.pi)
            u = grids[0] * np.cos(t) + grids[1] * np.sin(t)
            v = -grids[0] * np.sin(t) + grids[1] * np.cos(t)
            rho = (u / axes[0]) ** 2 + (v / axes[1]) ** 2
            if wobble:
                phi = np.arctan2(v / axes[1], u / axes[0])
                bend = 1.0 + sum(rng.uniform(0, wobble) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
                                 for k in (2, 3, 4))
                rho = rho / bend**2
        else:
            rho = sum((g / a) ** 2 for g, a in zip(grids, axes))
        inside = rho <= 1.0
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        brightness = rng.uniform(0.45, 1.0)
        profile = brightness * (1.0 - 0.35 * rho) * (0.75 + 0.5 * texture[box])
        labels[box][inside] = i
        signal[box] = np.where(inside, profile, signal[box])
    return labels, signal


def _camera(rng, signal, shape, photons, background):
    ramp = np.add.reduce(np.meshgrid(*[np.linspace(0, rng.uniform(0.5, 1), s) for s in shape],
                                     indexing="ij")) / len(shape)
    bg = background * (0.5 + ramp + 0.6 * _smooth_noise(rng, shape, max(shape) / 8))
    optical = ndi.gaussian_filter(signal, 1.2) + bg
    counts = rng.poisson(np.clip(optical, 0, None) * photons).astype(np.float64)
    counts += rng.normal(0, 3.0, shape) + 100.0  # read noise and camera offset
    return np.clip(counts, 0, 65535).astype(np.uint16)


def make_nuclei(shape: tuple[int, int] = (256, 256), n_nuclei: int | None = None, *,
                radius: tuple[float, float] = (6.0, 14.0), touching: float = 0.25,
                density: float = 0.3, irregular: float = 0.0, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 2D nuclei image and its ground-truth instance labels.

    Parameters
    ----------
    shape : (Y, X) size in pixels.
    n_nuclei : number of nuclei; by default as many as cover ``density`` of the area.
    radius : range of nucleus radii in pixels.
    touching : probability (0-1) that a new nucleus may touch, even overlap, a previous one
        (the later one is drawn on top, as in a projection).
    density : share of the area covered by nuclei when ``n_nuclei`` is None (0.05-0.7);
        with ``touching`` >= 0.5 and ``density`` >= 0.45 nuclei crowd into clumps
        (`make_crowded_nuclei`).
    seed : random seed; the same seed gives the same image.

    Returns ``(image, labels)``: uint16 camera counts (offset 100) and uint16
    instance labels (0 = background, 1..n = nuclei), both shaped ``shape``.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"shape must be (Y, X) with sides >= 8; got {shape}.")
    if not 0.05 <= float(density) <= 0.7:
        raise ValueError(f"density must be between 0.05 and 0.7 (share of the area); got {density!r}.")
    if not 0.0 <= float(touching) <= 1.0:
        raise ValueError(f"touching must be a probability between 0 and 1; got {touching!r}.")
    if n_nuclei is None:
        n_nuclei = max(1, int(density * shape[0] * shape[1] / (np.pi * np.mean(radius) ** 2)))
    if not 0.0 <= float(irregular) <= 0.3:
        raise ValueError(f"irregular must be between 0 (ellipses) and 0.3; got {irregular!r}.")
    centres, sizes = _place_centres(rng, shape, n_nuclei, radius, touching)
    elongation = (0.7 - irregular, 1.3 + 2 * irregular)
    labels, signal = _render(shape, centres, sizes, rng, wobble=irregular, elongation=elongation)
    image = _camera(rng, signal, shape, photons=rng.uniform(150, 250), background=0.12)
    return image, labels.astype(np.uint16)


def make_crowded_nuclei(shape: tuple[int, int] = (256, 256), *, seed: int = 0
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Crowded, irregular nuclei: half the area covered, most nuclei touching or
    overlapping a neighbour, bent and stretched outlines (`make_nuclei` with
    ``density=0.5, touching=0.7, irregular=0.2``); what the accuracy benchmark and
    the boundary-aware target are measured on."""
    return make_nuclei(shape, density=0.5, touching=0.7, irregular=0.2, seed=seed)


def make_nuclei_stack(shape: tuple[int, int, int] = (16, 128, 128), n_nuclei: int | None = None, *,
                      radius: tuple[float, float] = (6.0, 12.0), anisotropy: float = 0.5,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 3D (Z, Y, X) nuclei stack and its instance labels (ellipsoids).

    ``anisotropy`` shrinks nuclei along Z (coarser Z sampling, as in most stacks).
    Returns ``(image uint16, labels uint16)`` shaped ``shape``.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be (Z, Y, X) with sides >= 4; got {shape}.")
    if n_nuclei is None:
        vol = np.prod(shape) / anisotropy
        n_nuclei = max(1, int(0.25 * vol / (4 / 3 * np.pi * np.mean(radius) ** 3)))
    scale = np.array([1 / anisotropy, 1, 1])
    centres, sizes = _place_centres(rng, tuple(np.array(shape) * scale), n_nuclei, radius, 0.2)
    centres = [c / scale for c in centres]
    labels, signal = _render(shape, centres, sizes, rng, anisotropy=anisotropy)
    image = _camera(rng, signal, shape, photons=200.0, background=0.12)
    return image, labels.astype(np.uint16)
