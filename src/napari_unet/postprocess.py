"""From probabilities to label images: threshold / argmax, connected components,
small-object removal, watershed splitting of touching objects.

All functions take and return new arrays (no Keras, no Qt). Label images use
the smallest unsigned integer dtype that holds their largest id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .checks import check_switch, check_whole, is_real


@dataclass(frozen=True)
class LabelOptions:
    """How probabilities become labels; every value is checked when it is created.

    ``threshold``: foreground probability above which a pixel is foreground, in
    (0, 1), or None for the model's own. ``instances``: one id per object (else
    a 0/1 mask). ``min_size``: objects under this many pixels are removed.
    ``split_touching``: separate touching objects by a watershed.
    ``link_planes``: label objects in 3D across Z instead of per plane.
    """

    threshold: float | None = None
    instances: bool = True
    min_size: int = 0
    split_touching: bool = False
    link_planes: bool = False

    def __post_init__(self) -> None:
        t = self.threshold
        if t is not None:
            if not is_real(t) or not 0.0 < t < 1.0:
                raise ValueError(f"threshold must be a number between 0 and 1 (exclusive); got {t!r}.")
            object.__setattr__(self, "threshold", float(t))
        object.__setattr__(self, "min_size", check_whole("min_size", self.min_size, 0, unit=" of pixels"))
        for name in ("instances", "split_touching", "link_planes"):
            object.__setattr__(self, name, check_switch(name, getattr(self, name)))

    def with_threshold(self, default: float) -> LabelOptions:
        """These options with ``threshold`` filled in from ``default`` when it is None."""
        if self.threshold is not None:
            return self
        return LabelOptions(float(default), self.instances, self.min_size, self.split_touching,
                            self.link_planes)


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


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber ids to 1..n keeping 0 as background."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if len(ids) == 0 or ids[-1] == len(ids):
        return labels
    lut = np.zeros(int(ids[-1]) + 1, np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[labels]


def labels_from_probabilities(
    probs: np.ndarray,
    spatial_axes: str,
    *,
    n_classes: int = 1,
    threshold: float = 0.5,
    instances: bool = True,
    min_size: int = 0,
    split_touching: bool = False,
    link_planes: bool = False,
) -> np.ndarray:
    """Label image from probabilities with axes ``spatial_axes`` (e.g. ``"TZYX"``).

    Binary (``n_classes == 1``): threshold, then instance ids (unique over the
    whole array; per YX plane, or per Z stack when ``link_planes``) or a 0/1
    mask. Multi-class: argmax over the trailing class axis. The options are
    checked as `LabelOptions` (``ValueError`` for out-of-range values).
    """
    options = LabelOptions(threshold, instances, min_size, split_touching, link_planes)
    threshold, min_size = options.threshold, options.min_size
    if n_classes > 1:
        classes = np.argmax(probs, axis=-1)
        return classes.astype(smallest_label_dtype(n_classes - 1))
    mask = probs > threshold
    if not instances:
        return mask.astype(np.uint8)
    unit_ndim = 3 if (link_planes and "Z" in spatial_axes) else 2
    lead = mask.shape[: mask.ndim - unit_ndim]
    units = mask.reshape((-1,) + mask.shape[mask.ndim - unit_ndim:])
    out = np.zeros(units.shape, np.int64)
    offset = 0
    for i, unit in enumerate(units):
        lab = label_mask(unit, min_size=min_size, split_touching=split_touching)
        n = int(lab.max())
        out[i] = np.where(lab > 0, lab + offset, 0)
        offset += n
    out = out.reshape(lead + out.shape[1:])
    return out.astype(smallest_label_dtype(offset))
