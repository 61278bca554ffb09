"""Boundary-aware instance segmentation: the 3-class targets and their decoding.

Touching nuclei merge when a network only learns foreground. The U-Net paper
separates them by weighting the gaps between cells; the 3-class U-Net of the
StarDist paper predicts background / interior / boundary instead. Here:

* `boundary_classes` turns instance labels (0 = background, 1..n = objects)
  into classes 0 = background, 1 = interior, 2 = boundary, the boundary being
  a band ``width`` pixels wide inside each object along its outline, and so
  also wherever two objects touch.
* `border_weights` is the U-Net paper's extra loss weight where objects come close
  (``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``), optional in training.
* `napari_unet.labels.decode.decode_boundaries` turns the network's (..., 3)
  probabilities back into instances.

No Keras and no Qt here; inputs are never modified.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["BACKGROUND", "INTERIOR", "BOUNDARY", "BOUNDARY_CLASS_NAMES", "boundary_classes",
           "border_weights", "touching_seams"]

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
BOUNDARY_CLASS_NAMES = ["background", "interior", "boundary"]


def _disk(width: int, ndim: int, sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """A ball footprint of radius ``width`` (a 3x3 square for width 1: 8-connected); with
    ``sampling`` (each axis' pixel size relative to the finest) an ellipsoid of radius
    ``width`` finest pixels, at least one pixel along every axis (a Z plane 3 px away
    is the nearest one there is)."""
    if width == 1:
        return np.ones((3,) * ndim, bool)
    radii = np.array([float(width)] * ndim if sampling is None
                     else [max(1.0, width / s) for s in sampling])
    reach = np.floor(radii).astype(int)
    grid = np.indices(tuple(2 * reach + 1)) - reach.reshape((-1,) + (1,) * ndim)
    return (((grid / radii.reshape((-1,) + (1,) * ndim)) ** 2).sum(axis=0) <= 1.0 + 1e-9)


def _near_others(labels: np.ndarray, width: int, sampling: tuple[float, ...] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(near_object, near_background)``: pixels with another object, or background,
    within ``width`` (finest pixels along each axis with ``sampling``, see `_disk`; pixels
    outside the image do not count). ``ValueError`` for labels that are not integers or a
    width other than 1-3."""
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"Instance labels must be integers; got dtype {labels.dtype}.")
    if int(width) != width or not 1 <= width <= 3:
        raise ValueError(f"boundary_width must be 1, 2 or 3 pixels; got {width!r}.")
    labels = labels.astype(np.int64)
    footprint = _disk(int(width), labels.ndim, sampling)
    top = int(labels.max()) + 1
    high = ndi.maximum_filter(labels, footprint=footprint, mode="nearest")
    low_object = ndi.minimum_filter(np.where(labels > 0, labels, top), footprint=footprint,
                                    mode="nearest")
    near_object = ((high != labels) & (high > 0)) | ((low_object != labels) & (low_object != top))
    near_background = ndi.minimum_filter(labels, footprint=footprint, mode="nearest") == 0
    return near_object, near_background


def boundary_classes(labels: np.ndarray, width: int = 2,
                     sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """Background (0) / interior (1) / boundary (2) classes of instance ``labels``.

    ``labels`` is a 2D (Y, X) or 3D integer array of object ids; ``width`` (1-3
    pixels) is how far into each object the boundary band reaches. A pixel is
    boundary when a pixel of another id (background or another object) lies
    within ``width`` of it; pixels outside the image do not count, so objects
    cut by the image border keep their interior there. ``sampling``: each axis' pixel
    size relative to the finest (e.g. ``(3, 1, 1)`` for Z planes 3 px apart), so the band
    is ``width`` finest pixels deep along every axis, but at least one pixel (a thin
    stack's objects keep interior planes). Returns uint8.
    """
    labels = np.asarray(labels)
    near_object, near_background = _near_others(labels, width, sampling)
    inside = labels > 0
    out = np.zeros(labels.shape, np.uint8)
    out[inside] = INTERIOR
    out[inside & (near_object | near_background)] = BOUNDARY
    return out


def touching_seams(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Boolean mask of the object pixels within ``width`` of another object (not of the
    background): where touching objects meet, which is where they get merged."""
    labels = np.asarray(labels)
    return (labels > 0) & _near_others(labels, width)[0]


def border_weights(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
                   sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """The U-Net paper's separation weights of instance ``labels`` (2D or 3D, 0 = background).

    For every pixel, ``d1`` and ``d2`` are its distances in pixels to the outlines of the
    nearest and the second-nearest object (for a pixel inside an object, the distance to
    that object's own outline counts), and its weight is ``w0 * exp(-(d1 + d2)**2 /
    (2 * sigma**2))``: large in narrow gaps between objects and along the seams of
    touching ones, falling off into their interiors, near 0 elsewhere (everywhere when
    there are fewer than two objects). The loss adds it to a pixel's class weight.
    Returns float32 of ``labels``' shape. Distances to an object are computed only
    within ``3 * sigma`` px of it (beyond, the weight is under ``w0 * exp(-4.5)``).
    ``sampling``: each axis' pixel size relative to the finest (e.g. ``(3, 1, 1)`` for Z
    planes 3 px apart), so distances, ``sigma`` and the reach are in finest pixels
    (None: 1 per axis; then a stack's thin objects are near their outlines everywhere).
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"Instance labels must be integers; got dtype {labels.dtype}.")
    sampling = (1.0,) * labels.ndim if sampling is None else tuple(float(v) for v in sampling)
    reach = [max(1, int(np.ceil(3 * sigma / v))) for v in sampling]
    nearest = np.full(labels.shape, np.inf, np.float32)
    second = np.full(labels.shape, np.inf, np.float32)
    for index, box in enumerate(ndi.find_objects(labels.astype(np.int64))):
        if box is None:
            continue
        window = tuple(slice(max(0, s.start - r), min(n, s.stop + r))
                       for s, n, r in zip(box, labels.shape, reach))
        inside = labels[window] == index + 1
        distance = (ndi.distance_transform_edt(~inside, sampling=sampling)
                    + ndi.distance_transform_edt(inside, sampling=sampling)).astype(np.float32)
        d1, d2 = nearest[window], second[window]
        second[window] = np.minimum(d2, np.maximum(d1, distance))
        nearest[window] = np.minimum(d1, distance)
    gap = nearest + second  # inf where fewer than two objects are within reach
    return (w0 * np.exp(-(gap**2) / (2.0 * sigma**2))).astype(np.float32)
