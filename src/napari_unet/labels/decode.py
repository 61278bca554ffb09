"""From probabilities to label images: threshold / argmax, connected components,
small-object removal, watershed splitting of touching objects, and the seeded watershed
that decodes a boundary model (`decode_boundaries`).

`labels_from_probabilities` is the one decoding every path uses: `label_maps` reduces the
probabilities to the one map per pixel labels come from (the device computes the same,
`napari_unet.prediction.reduced`) and `labels_from_maps` decodes it. The caller's
arrays are never changed (functions with ``copy=False`` change only arrays the caller
made for them; no Keras, no Qt). Label images use the smallest unsigned integer dtype
that holds their largest id; intermediate labels are int32 below 2**31 pixels.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ..model.decoding import Decoding
from .options import LabelOptions
from .seeds import split_at_necks
from .targets import BACKGROUND, INTERIOR

__all__ = ["labels_from_probabilities", "decode_boundaries", "label_mask",
           "split_objects", "split_touching_objects", "remove_small", "relabel_sequential",
           "smallest_label_dtype"]


def smallest_label_dtype(max_label: int) -> np.dtype:
    """uint8, uint16, uint32 or uint64: the smallest that holds ``max_label``."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"Label id {max_label} does not fit in 64 bits.")


def _label_dtype(shape: tuple[int, ...]) -> np.dtype:
    """int32 for label images that int32 can count every pixel of, else int64: half the
    memory of int64 for all but the largest arrays (a 128 x 1024 x 1024 volume's labels
    are 0.5 GiB instead of 1)."""
    return np.dtype(np.int32 if math.prod(shape) < 2**31 - 1 else np.int64)


_SLAB = 1 << 22  # voxels per slab: numpy indexes with int64, so whole-volume indexing
# by int32 labels would make an int64 copy of them (1 GiB for 128 x 1024 x 1024)


def _slabs(labels: np.ndarray):
    """Slices of ``_SLAB`` voxels over ``labels.ravel()`` (a view: C-contiguous labels)."""
    return (slice(i, i + _SLAB) for i in range(0, labels.size, _SLAB))


def _id_counts(labels: np.ndarray, top: int) -> np.ndarray:
    """Voxels per id 0..``top`` of integer ``labels`` in that range (`np.bincount`, a slab
    at a time)."""
    flat = labels.ravel()
    counts = np.zeros(top + 1, np.int64)
    for part in _slabs(labels):
        counts += np.bincount(flat[part], minlength=top + 1)
    return counts


def _lookup(table: np.ndarray, labels: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[...] = table[labels]`` a slab at a time; ``out`` is C-contiguous (and may be
    ``labels``)."""
    flat, into = labels.reshape(-1), out.reshape(-1)
    for part in _slabs(labels):
        into[part] = table[flat[part]]
    return out


def remove_small(labels: np.ndarray, min_size: int, copy: bool = True) -> np.ndarray:
    """``labels`` without objects of fewer than ``min_size`` pixels: a copy, or with
    ``copy=False`` (labels the caller made and owns) the same array changed in place (a
    C-contiguous copy when it is not C-contiguous)."""
    out = labels.copy() if copy else labels
    if min_size <= 1 or labels.max() == 0:
        return out
    if not out.flags.c_contiguous:
        out = np.ascontiguousarray(out)
    keep = _id_counts(out, int(out.max())) >= min_size
    keep[0] = True
    return _lookup(np.where(keep, np.arange(len(keep)), 0).astype(out.dtype), out, out)


def split_touching_objects(mask: np.ndarray, min_distance: int = 4,
                           sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """Label ``mask`` with touching objects separated by a watershed on its distance transform.

    ``min_distance`` is the smallest distance between two object centres, in pixels of
    the finest axis; ``sampling`` the relative pixel size per axis (None: 1), so with
    ``(4, 1, 1)`` centres 8 px apart are 2 Z planes apart.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if not mask.any():
        return np.zeros(mask.shape, np.int64)
    distance = ndi.distance_transform_edt(mask, sampling=sampling)
    components, _ = ndi.label(mask)
    if sampling is None:
        peaks = peak_local_max(distance, min_distance=min_distance, labels=components,
                               exclude_border=False)
    else:  # the search window in index units along each axis, then spaced in true units
        window = np.ones([2 * int(min_distance // s) + 1 for s in sampling], bool)
        peaks = peak_local_max(distance, footprint=window, labels=components,
                               exclude_border=False)
        peaks = _spaced(peaks, distance, sampling, min_distance)
    markers = np.zeros(mask.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # objects too small to have a peak keep one marker each
    missing = np.setdiff1d(np.unique(components[mask]), np.unique(components[markers > 0]))
    for i, comp in enumerate(missing, start=len(peaks) + 1):
        markers[tuple(np.argwhere(components == comp)[0])] = i
    return watershed(-distance, markers, mask=mask)


def _spaced(peaks: np.ndarray, distance: np.ndarray, sampling: tuple[float, ...],
            min_distance: float) -> np.ndarray:
    """The ``peaks`` (N, ndim) kept highest ``distance`` first, each dropping the lower
    peaks no farther than ``min_distance`` from it along every axis, measured with the
    relative pixel sizes ``sampling`` (a plateau's pixels become one peak)."""
    from scipy.spatial import cKDTree

    if len(peaks) < 2:
        return peaks
    order = np.argsort(-distance[tuple(peaks.T)], kind="stable")
    peaks = peaks[order]
    scaled = peaks * np.asarray(sampling, float)
    tree, keep = cKDTree(scaled), np.ones(len(peaks), bool)
    for i in range(len(peaks)):
        if keep[i]:
            near = np.asarray(tree.query_ball_point(scaled[i], r=min_distance, p=np.inf), int)
            keep[near[near > i]] = False
    return peaks[keep]


def split_objects(mask: np.ndarray, split_ratio: float, split_distance: int,
                  sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """Integer labels of ``mask``'s objects: split where they narrow to a neck under
    ``split_ratio`` of their width (`split_at_necks`), else at distance-transform peaks at
    least ``split_distance`` px apart (`split_touching_objects`), else its connected
    components; distances with the relative pixel sizes ``sampling`` (None: 1)."""
    if split_ratio:
        return split_at_necks(mask, split_ratio, sampling)
    if split_distance:
        return split_touching_objects(mask, split_distance, sampling)
    return ndi.label(mask, output=_label_dtype(mask.shape))[0]


def label_mask(mask: np.ndarray, *, min_size: int = 0, split_touching: bool = False,
               split_distance: int = 0, split_ratio: float = 0.0,
               sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """Instance labels (int32 or int64) of a 2D or 3D boolean mask: its connected
    components, with touching objects separated where they narrow (`split_at_necks`, with a ``split_ratio``)
    or (`split_touching_objects`) at distance-transform peaks at least ``split_distance``
    px apart, or 4 px with ``split_touching`` and no distance; distances are measured
    with the relative pixel sizes ``sampling`` (None: 1 per axis)."""
    distance = split_distance or (DEFAULT_SPLIT_DISTANCE if split_touching else 0)
    labels = split_objects(mask, split_ratio, distance, sampling)
    labels = remove_small(labels, min_size, copy=False)  # made here: no copy needed
    return relabel_sequential(labels, copy=False)


SEED_MIN_PIXELS = 5
DEFAULT_SPLIT_DISTANCE = 4  # px, for split_touching when no distance is known


def decode_boundaries(probs: np.ndarray, decoding: Decoding = Decoding(),
                      sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """Instance labels (int32, or int64 for 2**31 pixels or more; ids 1..n) from (..., 3)
    background/interior/boundary probabilities of one 2D plane or one 3D stack (the
    leading axes are spatial), as predicted by a network trained on `napari_unet.labels.targets.boundary_classes`.

    Seeds are the connected regions of confident interior (those of fewer than
    `SEED_MIN_PIXELS` pixels are dropped, so specks of confidence inside a large
    object do not cut it up); a seeded watershed
    on the interior probability grows them over the foreground, so a boundary
    band between two touching objects splits them; foreground regions without
    a seed keep one id each.

    ``decoding`` (a `Decoding`): foreground is ``p(interior) + p(boundary) >
    threshold``; seeds are connected regions where ``p(interior) > seed_threshold``;
    objects of fewer than ``min_size`` pixels are removed; touching objects whose
    interiors still meet are told apart by splitting their seed where it narrows to a
    neck under ``split_ratio`` of its width (`split_at_necks`), or else, with a
    ``split_distance`` (px, 0 = off), where its distance transform has peaks at least that
    far apart (`split_touching_objects`); both measure distances with the relative
    pixel sizes ``sampling`` (None: 1 per axis; e.g. ``(4, 1, 1)`` for Z planes 4x the
    pixel size apart).
    """
    probs = np.asarray(probs)
    if probs.shape[-1] != 3:
        raise ValueError(f"Boundary decoding needs 3 classes (background, interior, boundary) "
                         f"on the last axis; got shape {probs.shape}.")
    return decode_masked_interior(label_maps(probs, "boundary", decoding, True), decoding,
                                  sampling)


def decode_masked_interior(interior: np.ndarray, decoding: Decoding = Decoding(),
                           sampling: tuple[float, ...] | None = None) -> np.ndarray:
    """`decode_boundaries` of one plane or stack from its map (`label_maps`): the interior
    probability where the pixel is foreground, `MASKED` elsewhere. Returns int32 labels
    (int64 for 2**31 pixels or more), ids 1..n."""
    from skimage.segmentation import watershed

    mask = interior != MASKED
    if not mask.any():
        return np.zeros(mask.shape, _label_dtype(mask.shape))
    confident = (interior > decoding.seed_threshold) & mask
    seeds = split_objects(confident, decoding.split_ratio, decoding.split_distance, sampling)
    seeds = relabel_sequential(remove_small(seeds, SEED_MIN_PIXELS, copy=False))  # specks split
    n = int(seeds.max())
    labels = watershed(-interior, seeds, mask=mask) if n else np.zeros(mask.shape, np.int64)
    orphans, n_orphans = ndi.label(mask & (labels == 0))  # foreground that no seed reached
    if n_orphans:
        labels = np.where(orphans > 0, orphans + n, labels)
    labels = labels.astype(_label_dtype(labels.shape), copy=False)
    return relabel_sequential(remove_small(labels, decoding.min_size, copy=False), copy=False)


def _label_classes(classes: np.ndarray, min_size: int) -> np.ndarray:
    """One id per connected object of each non-background class of a class map."""
    out = np.zeros(classes.shape, np.int64)
    for c in np.unique(classes[classes > 0]):
        lab = label_mask(classes == c, min_size=min_size)
        out = np.where(lab > 0, lab + out.max(), out)
    return out


def relabel_sequential(labels: np.ndarray, copy: bool = True) -> np.ndarray:
    """Renumber ids to 1..n keeping 0 as background (``labels`` itself when they are).

    Returns a new array (int32 for fewer than 2**31 ids, else int64); with
    ``copy=False`` (labels the caller made and owns) a C-contiguous int32 or int64
    ``labels`` is renumbered in place and returned."""
    countable = (labels.size and labels.dtype.kind in "iu" and labels.dtype != np.uint64
                 and labels.min() >= 0)
    if countable and int(labels.max()) <= labels.size:  # the ids present, without a sort
        ids = np.flatnonzero(_id_counts(labels, int(labels.max())))
    else:
        ids = np.unique(labels)
    ids = ids[ids != 0]
    if len(ids) == 0 or ids[-1] == len(ids):
        return labels
    lut = np.zeros(int(ids[-1]) + 1, _label_dtype((len(ids) + 1,)))
    lut[ids] = np.arange(1, len(ids) + 1)
    in_place = (not copy and labels.dtype in (np.int32, np.int64) and labels.flags.c_contiguous
                and labels.dtype.itemsize >= lut.itemsize)
    into = labels if in_place else np.empty(labels.shape, lut.dtype)
    return _lookup(lut.astype(into.dtype), np.ascontiguousarray(labels), into)


def labels_from_probabilities(probs: np.ndarray, spatial_axes: str, options: LabelOptions,
                              target: str = "foreground") -> np.ndarray:
    """Label image from probabilities with axes ``spatial_axes`` (e.g. ``"TZYX"``).

    ``probs`` is float (..., spatial) for a ``"foreground"`` model or has a trailing
    class axis for ``"classes"`` and ``"boundary"`` models; ``options`` is a
    `LabelOptions` whose None values were filled in (`LabelOptions.for_unet`).

    - ``"foreground"``: threshold, then instance ids (per YX plane, or per Z
      stack when ``link_planes``; unique over the whole array) or a 0/1 mask.
    - ``"boundary"``: instances by `decode_boundaries`, or the 0/1 foreground mask.
    - ``"classes"``: the class map (argmax), or with ``instances`` one id per
      connected object of any non-background class.

    Returns the smallest unsigned dtype that holds the largest id.
    """
    return labels_from_maps(label_maps(probs, target, options.decoding, options.instances),
                            spatial_axes, options, target)


MASKED = -1.0  # a boundary network's interior map outside the foreground (`label_maps`)


def label_maps(probs: np.ndarray, target: str, decoding: Decoding, instances: bool
               ) -> np.ndarray:
    """The one map per pixel labels are decoded from (`labels_from_maps`), from ``probs``
    as `labels_from_probabilities` takes them, with the thresholds of ``decoding``:

    - a 0/1 uint8 mask: foreground networks, and boundary networks without ``instances``
      (foreground is ``1 - p(background) > threshold``);
    - boundary networks with ``instances``: the interior probability where the pixel is
      foreground, `MASKED` elsewhere (the probabilities' float dtype);
    - classes networks: the class index (argmax), smallest unsigned dtype.

    `napari_unet.prediction.reduced` computes the same on the device, so that only this
    map, not every class's probability, is copied back."""
    if target == "classes":
        return np.argmax(probs, axis=-1).astype(smallest_label_dtype(probs.shape[-1] - 1))
    if target == "foreground":
        return (probs > decoding.threshold).astype(np.uint8)
    mask = (1.0 - probs[..., BACKGROUND]) > decoding.threshold
    if not instances:
        return mask.astype(np.uint8)
    interior = probs[..., INTERIOR]
    return np.where(mask, interior, interior.dtype.type(MASKED))


def labels_from_maps(maps: np.ndarray, spatial_axes: str, options: LabelOptions,
                     target: str = "foreground") -> np.ndarray:
    """`labels_from_probabilities` from the maps `label_maps` gives (``spatial_axes``, no
    class axis), made with the same ``options`` and ``target``: the mask or class map
    itself without ``options.instances``, else instance labels (smallest unsigned dtype)."""
    decoding = options.decoding  # ValueError unless filled in
    if not options.instances:
        return maps
    unit_ndim = 3 if options.links(spatial_axes) else 2
    lead = maps.shape[: maps.ndim - unit_ndim]
    units = maps.reshape((-1,) + maps.shape[maps.ndim - unit_ndim:])
    out = None  # one unit (a plane, a volume) is its own output: no second copy of it
    offset = 0
    sampling = options.sampling(spatial_axes[len(spatial_axes) - unit_ndim:])
    for i, unit in enumerate(units):
        if target == "boundary":
            lab = decode_masked_interior(unit, decoding, sampling)
        elif target == "classes":
            lab = _label_classes(unit, decoding.min_size)
        else:
            lab = label_mask(unit.view(np.bool_), min_size=decoding.min_size,
                             split_touching=options.split_touching,
                             split_distance=decoding.split_distance,
                             split_ratio=decoding.split_ratio, sampling=sampling)
        if len(units) == 1:
            out = lab[None]
        else:
            if out is None:
                shape = (len(units),) + lab.shape
                out = np.zeros(shape, _label_dtype(shape))
            out[i] = lab
            np.add(out[i], offset, out=out[i], where=lab > 0)
        offset += int(lab.max())
    out = out.reshape(lead + out.shape[1:])
    dtype = smallest_label_dtype(offset)
    if out.dtype.kind == "i" and out.dtype.itemsize == dtype.itemsize:
        return out.view(dtype)  # ids are >= 0: the same bits, no copy of a large volume
    return out.astype(dtype)
