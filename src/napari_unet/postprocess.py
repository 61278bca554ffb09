"""From probabilities to label images: threshold / argmax, connected components,
small-object removal, watershed splitting of touching objects.

All functions take and return new arrays (no Keras, no Qt). Label images use
the smallest unsigned integer dtype that holds their largest id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .boundaries import BACKGROUND, INTERIOR
from .checks import check_switch, check_whole, is_real


@dataclass(frozen=True)
class LabelOptions:
    """How probabilities become labels; every value is checked when it is created.

    ``threshold``: foreground probability above which a pixel is foreground, in
    (0, 1). ``instances``: one id per object (else a 0/1 mask, or the class map
    of a multi-class model). ``min_size``: objects under this many pixels are
    removed. ``split_touching``: separate touching objects of a foreground model
    by a watershed on the distance transform. ``link_planes``: label objects in
    3D across Z instead of per plane. ``seed_threshold``: interior probability
    that seeds an object of a boundary model. ``split_distance``: a boundary
    model's seeds are split where their distance transform has peaks at least
    this many pixels apart (0 = not split). ``threshold``, ``min_size``,
    ``seed_threshold`` and ``split_distance`` left as None take the model's own
    (calibrated) values.
    """

    threshold: float | None = None
    instances: bool = True
    min_size: int | None = None
    split_touching: bool = False
    link_planes: bool = False
    seed_threshold: float | None = None
    split_distance: int | None = None

    def __post_init__(self) -> None:
        for name in ("threshold", "seed_threshold"):
            t = getattr(self, name)
            if t is not None:
                if not is_real(t) or not 0.0 < t < 1.0:
                    raise ValueError(f"{name} must be a number between 0 and 1 (exclusive), or "
                                     f"None for the model's own; got {t!r}.")
                object.__setattr__(self, name, float(t))
        for name in ("min_size", "split_distance"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_whole(name, getattr(self, name), 0,
                                                           unit=" of pixels"))
        for name in ("instances", "split_touching", "link_planes"):
            object.__setattr__(self, name, check_switch(name, getattr(self, name)))

    def check_filled(self, what: str) -> None:
        """``ValueError`` unless the model's values were filled in (`for_model`)."""
        if None in (self.threshold, self.min_size, self.seed_threshold, self.split_distance):
            raise ValueError(f"{what} needs the model's values filled in: pass "
                             "options.for_model(...).")

    def for_model(self, threshold: float, seed_threshold: float = 0.5,
                  min_size: int = 0, split_distance: int = 0) -> LabelOptions:
        """These options with every value left as None taken from a model's (the arguments)."""
        return replace(self, threshold=_first(self.threshold, threshold),
                       seed_threshold=_first(self.seed_threshold, seed_threshold),
                       min_size=_first(self.min_size, min_size),
                       split_distance=_first(self.split_distance, split_distance))

    def links(self, spatial_axes: str) -> bool:
        """Whether labels with ``spatial_axes`` are instances linked across Z (a unit is a
        whole Z stack, not a plane)."""
        return self.instances and self.link_planes and "Z" in spatial_axes

    def for_unet(self, unet: Any, spatial_axes: str = "YX") -> LabelOptions:
        """`for_model` with the values of ``unet`` (a `UNetModel` or a `ModelSummary`) for
        labels with ``spatial_axes``: its 3D-linked values (``linked_decoding``) when these
        options ask for instances linked across planes, the axes have a Z and the model
        has them."""
        linked = getattr(unet, "linked_decoding", None)
        if linked and self.links(spatial_axes):
            return self.for_model(**linked)
        return self.for_model(unet.threshold, unet.seed_threshold, unet.min_size,
                              getattr(unet, "split_distance", 0))


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value


def smallest_label_dtype(max_label: int) -> np.dtype:
    """uint8, uint16, uint32 or uint64: the smallest that holds ``max_label``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"Label id {max_label} does not fit in 64 bits.")


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Return a copy of ``labels`` without objects of fewer than ``min_size`` pixels."""
    if min_size <= 1 or labels.max() == 0:
        return labels.copy()
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def split_touching_objects(mask: np.ndarray, min_distance: int = 4) -> np.ndarray:
    """Label ``mask`` with touching objects separated by a watershed on its distance transform.

    ``min_distance`` (pixels) is the smallest distance between two object centres.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if not mask.any():
        return np.zeros(mask.shape, np.int64)
    distance = ndi.distance_transform_edt(mask)
    components, _ = ndi.label(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=components,
                           exclude_border=False)
    markers = np.zeros(mask.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # objects too small to have a peak keep one marker each
    missing = np.setdiff1d(np.unique(components[mask]), np.unique(components[markers > 0]))
    for i, comp in enumerate(missing, start=len(peaks) + 1):
        markers[tuple(np.argwhere(components == comp)[0])] = i
    return watershed(-distance, markers, mask=mask)


def label_mask(mask: np.ndarray, *, min_size: int = 0, split_touching: bool = False) -> np.ndarray:
    """Connected-component instance labels (int64) of a 2D or 3D boolean mask."""
    if split_touching:
        labels = split_touching_objects(mask)
    else:
        labels, _ = ndi.label(mask)
    labels = remove_small(labels, min_size)
    return relabel_sequential(labels)


SEED_MIN_PIXELS = 5


def decode_boundaries(probs: np.ndarray, *, threshold: float = 0.5, seed_threshold: float = 0.5,
                      min_size: int = 0, split_distance: int = 0) -> np.ndarray:
    """Instance labels (int64, ids 1..n) from (..., 3) background/interior/boundary
    probabilities of one 2D plane or one 3D stack (the leading axes are spatial),
    as predicted by a network trained on `napari_unet.boundaries.boundary_classes`.

    Seeds are the connected regions of confident interior (those of fewer than
    `SEED_MIN_PIXELS` pixels are dropped, so specks of confidence inside a large
    object do not cut it up); a seeded watershed
    on the interior probability grows them over the foreground, so a boundary
    band between two touching objects splits them; foreground regions without
    a seed keep one id each.

    ``threshold``: foreground is ``p(interior) + p(boundary) > threshold``.
    ``seed_threshold``: seeds are connected regions where ``p(interior) >
    seed_threshold``. ``min_size``: objects of fewer pixels are removed.
    ``split_distance`` (px, 0 = off): a seed is split where its distance transform
    has peaks at least this far apart (`split_touching_objects`), for touching
    objects whose interiors still meet.
    """
    from skimage.segmentation import watershed

    probs = np.asarray(probs)
    if probs.shape[-1] != 3:
        raise ValueError(f"Boundary decoding needs 3 classes (background, interior, boundary) "
                         f"on the last axis; got shape {probs.shape}.")
    interior = probs[..., INTERIOR]
    mask = (1.0 - probs[..., BACKGROUND]) > threshold
    if not mask.any():
        return np.zeros(mask.shape, np.int64)
    confident = (interior > seed_threshold) & mask
    seeds = (split_touching_objects(confident, split_distance) if split_distance
             else ndi.label(confident)[0])
    seeds = relabel_sequential(remove_small(seeds, SEED_MIN_PIXELS))  # specks would split objects
    n = int(seeds.max())
    labels = watershed(-interior, seeds, mask=mask) if n else np.zeros(mask.shape, np.int64)
    orphans, n_orphans = ndi.label(mask & (labels == 0))  # foreground that no seed reached
    if n_orphans:
        labels = np.where(orphans > 0, orphans + n, labels)
    return relabel_sequential(remove_small(labels.astype(np.int64), min_size))


def _label_classes(classes: np.ndarray, min_size: int) -> np.ndarray:
    """One id per connected object of each non-background class of a class map."""
    out = np.zeros(classes.shape, np.int64)
    for c in np.unique(classes[classes > 0]):
        lab = label_mask(classes == c, min_size=min_size)
        out = np.where(lab > 0, lab + out.max(), out)
    return out


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber ids to 1..n keeping 0 as background."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if len(ids) == 0 or ids[-1] == len(ids):
        return labels
    lut = np.zeros(int(ids[-1]) + 1, np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[labels]


def labels_from_probabilities(probs: np.ndarray, spatial_axes: str, options: LabelOptions,
                              target: str = "foreground") -> np.ndarray:
    """Label image from probabilities with axes ``spatial_axes`` (e.g. ``"TZYX"``).

    ``probs`` is float (..., spatial) for a ``"foreground"`` model or has a trailing
    class axis for ``"classes"`` and ``"boundary"`` models; ``options`` is a
    `LabelOptions` whose None values were filled in (`LabelOptions.for_model`).

    - ``"foreground"``: threshold, then instance ids (per YX plane, or per Z
      stack when ``link_planes``; unique over the whole array) or a 0/1 mask.
    - ``"boundary"``: instances by `decode_boundaries`, or the 0/1 foreground mask.
    - ``"classes"``: the class map (argmax), or with ``instances`` one id per
      connected object of any non-background class.

    Returns the smallest unsigned dtype that holds the largest id.
    """
    options.check_filled("labels_from_probabilities")
    if target == "classes" and not options.instances:
        classes = np.argmax(probs, axis=-1)
        return classes.astype(smallest_label_dtype(probs.shape[-1] - 1))
    if target == "foreground":
        mask = probs > options.threshold
    elif target == "boundary":
        mask = (1.0 - probs[..., BACKGROUND]) > options.threshold
    else:
        classes = np.argmax(probs, axis=-1)
        mask = classes > 0
    if not options.instances:
        return mask.astype(np.uint8)
    unit_ndim = 3 if options.links(spatial_axes) else 2
    lead = mask.shape[: mask.ndim - unit_ndim]
    source = probs if target == "boundary" else classes if target == "classes" else mask
    units = source.reshape((-1,) + source.shape[mask.ndim - unit_ndim:])
    out = np.zeros((len(units),) + mask.shape[mask.ndim - unit_ndim:], np.int64)
    offset = 0
    for i, unit in enumerate(units):
        if target == "boundary":
            lab = decode_boundaries(unit, threshold=options.threshold,
                                    seed_threshold=options.seed_threshold,
                                    min_size=options.min_size,
                                    split_distance=options.split_distance)
        elif target == "classes":
            lab = _label_classes(unit, options.min_size)
        else:
            lab = label_mask(unit, min_size=options.min_size,
                             split_touching=options.split_touching and target == "foreground")
        out[i] = np.where(lab > 0, lab + offset, 0)
        offset += int(lab.max())
    out = out.reshape(lead + out.shape[1:])
    return out.astype(smallest_label_dtype(offset))
