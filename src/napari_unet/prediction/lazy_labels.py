"""Labels of lazy probabilities, block by block: `lazy_labels`.

Masks and class maps are per pixel, so each block of probabilities gives its block of
labels. Instance labels need context: an object cut by a block border would get two ids.
Each block of instance labels is therefore decoded on the block grown by a halo on every
side (`LABEL_HALO` pixels, or the neighbouring blocks' whole width when they are
thinner), and each object is named by where it lies in the whole array: its id is 1 + the
flat index (over all axes but the class axis) of its first pixel in C order. Two blocks
that see the same whole object give it the same id without talking to each other, so
the labels of a big plane are computed and shown block by block, none larger than a
block of probabilities, and ids are unique across the array (not consecutive: use
`skimage.segmentation.relabel_sequential` on the computed result for 1..n). An object
that crosses a block border is whole when it is no wider than the halo, which
`label_halo` grows to the widest object a model was trained on (at most
`MAX_LABEL_HALO`, and never past the neighbouring blocks); a wider one may be cut there.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["LABEL_HALO", "MAX_LABEL_HALO", "label_halo", "lazy_labels", "anchor_ids"]

LABEL_HALO = 128  # pixels of context around a block of instance labels (per side)
MAX_LABEL_HALO = 1024  # px; never more than a neighbouring block is wide (dask.array.overlap)


def label_halo(info: Mapping[str, Any]) -> int:
    """Pixels of context per side for blocks of instance labels of a model with training
    record ``info`` (`napari_unet.model.summary.ModelSummary.info`): `LABEL_HALO`, or the
    widest object of its training labels (``info["largest_object_px"]``, see
    `napari_unet.training.data.largest_object`) when that is wider, at most
    `MAX_LABEL_HALO`."""
    widest = info.get("largest_object_px") or 0
    return int(min(MAX_LABEL_HALO, max(LABEL_HALO, widest)))


def lazy_labels(probs: Any, spatial_axes: str, options: Any, target: str = "foreground",
                halo: int = LABEL_HALO) -> Any:
    """Lazy labels of lazy probabilities ``probs`` (a dask array with ``spatial_axes``,
    e.g. ``"TYX"``, and a trailing class axis unless ``target`` is ``"foreground"``) by
    `labels_from_probabilities` with `LabelOptions` ``options`` (None values filled in).

    Masks (uint8) and class maps are computed per block. Instance labels are computed per
    block of Y and X (whole Z when objects are linked in 3D) with ``halo`` pixels of
    context and ids from their first pixel (see the module docstring): uint32, or uint64
    for arrays of 2**32 pixels or more. Returns a dask array with the chunks of
    ``probs`` in Y and X."""
    import dask.array as da

    from ..labels.decode import labels_from_probabilities, smallest_label_dtype

    options.decoding  # noqa: B018 - ValueError unless the model's values were filled in
    classed = target != "foreground"  # the probabilities have a trailing class axis
    drop = {"drop_axis": probs.ndim - 1} if classed else {}
    if not options.instances:
        dtype = smallest_label_dtype(probs.shape[-1] - 1) if target == "classes" else np.uint8
        return probs.map_blocks(labels_from_probabilities, spatial_axes, options, target,
                                dtype=dtype, **drop)
    whole = {}
    if options.links(spatial_axes):
        whole[spatial_axes.index("Z")] = -1
    if classed:
        whole[probs.ndim - 1] = -1
    if whole:
        probs = probs.rechunk(whole)
    depth = {i: 0 for i in range(probs.ndim)}
    for axis in (spatial_axes.index("Y"), spatial_axes.index("X")):
        depth[axis] = min(int(halo), min(probs.chunks[axis])) if len(probs.chunks[axis]) > 1 \
            else 0
    shape = probs.shape[: len(spatial_axes)]
    dtype = np.uint32 if int(np.prod(shape)) < 2**32 - 1 else np.uint64
    grown = da.overlap.overlap(probs, depth=depth, boundary="none")
    starts = [np.cumsum((0,) + c).tolist() for c in probs.chunks[: len(spatial_axes)]]
    chunks = probs.chunks[: len(spatial_axes)]
    return grown.map_blocks(_label_block, spatial_axes=spatial_axes, options=options,
                            target=target, depth=[depth[i] for i in range(len(spatial_axes))],
                            starts=starts, shape=shape, out_dtype=dtype, dtype=dtype,
                            chunks=chunks,
                            meta=np.empty((0,) * len(spatial_axes), dtype), **drop)


def _label_block(block: np.ndarray, spatial_axes: str, options: Any, target: str,
                 depth: list[int], starts: list[list[int]], shape: tuple,
                 out_dtype: Any, block_info: dict | None = None) -> np.ndarray:
    """Instance labels of one grown block, cropped to the block, with `anchor_ids`."""
    from ..labels.decode import labels_from_probabilities

    location = block_info[None]["chunk-location"][: len(spatial_axes)]
    labels = labels_from_probabilities(block, spatial_axes, options, target)
    origin, crop = [], []
    for axis, chunk in enumerate(location):
        lo = depth[axis] if chunk > 0 else 0
        hi = depth[axis] if chunk < len(starts[axis]) - 2 else 0
        origin.append(starts[axis][chunk] - lo)
        crop.append(slice(lo, labels.shape[axis] - hi))
    return anchor_ids(labels, origin, shape, out_dtype)[tuple(crop)]


def anchor_ids(labels: np.ndarray, origin: list[int], shape: tuple, dtype: Any = np.uint64
               ) -> np.ndarray:
    """``labels`` (a region of a larger label image of ``shape``, starting at ``origin``)
    with each object's id replaced by 1 + the flat C-order index, in ``shape``, of its first
    pixel: ids that do not depend on the region an object was decoded in."""
    from scipy import ndimage as ndi

    ids = np.unique(labels)
    ids = ids[ids > 0]
    out = np.zeros(labels.shape, dtype)
    if not ids.size:
        return out
    flat = np.arange(labels.size, dtype=np.int64).reshape(labels.shape)
    first = np.asarray(ndi.minimum(flat, labels, ids), dtype=np.int64)
    local = np.unravel_index(first, labels.shape)
    anchors = np.ravel_multi_index(tuple(o + c for o, c in zip(origin, local)), shape)
    lookup = np.zeros(int(ids.max()) + 1, dtype)
    lookup[ids] = anchors.astype(dtype) + 1
    return lookup[labels]
