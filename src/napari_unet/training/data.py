"""Training data: the user's images checked and normalised plane by plane, and their
labels turned into training targets (dense labels, scribbles, the boundary classes of
instance labels), with the target a new network learns chosen from them.

Targets are float32 ``(H, W)`` arrays holding a class index per pixel (0 =
background) or ``IGNORE`` (-1) where the pixel is not annotated; the loss skips
``IGNORE``. Nothing here modifies its inputs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..common import arrays
from ..labels.targets import boundary_classes
from ..model.config import UNetConfig
from ..model.normalization import PercentileNormalization

__all__ = ["TrainingData", "PlaneSource", "prepare_training_data", "encode_targets",
           "choose_target", "class_weights", "check_targets", "linked_stacks", "IGNORE",
           "LABEL_MODES", "TARGETS"]

IGNORE = -1.0
LABEL_MODES = ("dense", "sparse")
TARGETS = ("auto", "foreground", "classes", "boundary")


class PlaneSource(NamedTuple):
    """Where a training plane comes from: its ``image`` (index in the list), its ``stack``
    (indices along the leading axes other than Z, e.g. ``(t,)``; ``()`` for none) and ``z``
    (its index along Z, -1 when the image has no Z axis)."""

    image: int
    stack: tuple[int, ...]
    z: int



class TrainingData(NamedTuple):
    """The annotated planes of the training images: normalised float32 ``(H, W, C)``
    ``images``, float32 ``(H, W)`` ``targets``, the label planes as given (``truths``,
    int, for measuring instances) and each plane's `PlaneSource`."""

    images: list[np.ndarray]
    targets: list[np.ndarray]
    truths: list[np.ndarray]
    sources: list[PlaneSource]


def encode_targets(labels: np.ndarray, n_classes: int, mode: str = "dense") -> np.ndarray:
    """Turn user labels into float32 training targets (class index or ``IGNORE``).

    ``mode="dense"``: 0 = background, > 0 = foreground (``n_classes == 1``) or
    the class index (``n_classes >= 2``). ``mode="sparse"`` (scribbles): 0 = not
    annotated (ignored), 1 = background, 2..n = classes (foreground for binary).
    Raises ``ValueError`` for labels that cannot train anything.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode must be one of {LABEL_MODES}; got {mode!r}.")
    n_out = max(2, n_classes)
    if mode == "dense":
        if n_classes == 1:
            target = (labels > 0).astype(np.float32)
        else:
            if labels.max() >= n_classes:
                raise ValueError(
                    f"Labels contain class {int(labels.max())} but the model has "
                    f"{n_classes} classes (0..{n_classes - 1}); build a model with more "
                    "classes or relabel."
                )
            target = labels.astype(np.float32)
    else:
        if labels.max() > n_out:
            raise ValueError(
                f"Scribble labels contain value {int(labels.max())} but the model has "
                f"{n_out} classes: use 1 for background and 2..{n_out} for classes."
            )
        target = labels.astype(np.float32) - 1.0  # 0 (unannotated) becomes IGNORE
    return target


def choose_target(target: str, n_classes: int, label_mode: str, labels: Sequence[Any]) -> str:
    """What a new network of ``n_classes`` outputs learns from ``labels``.

    ``"foreground"`` (one sigmoid output: object or not), ``"classes"`` (softmax
    over class ids) or ``"boundary"`` (softmax over background / interior /
    boundary made from instance ids, see `napari_unet.labels.targets`). ``"auto"``
    picks ``"boundary"`` for dense labels with object ids above 1 (instances)
    when the network has one output, ``"classes"`` when it has several, and
    ``"foreground"`` otherwise. ``ValueError`` for a combination that cannot train.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")
    if target == "auto":
        if n_classes > 1:
            return "classes"
        instances = label_mode == "dense" and any(np.max(np.asarray(lab), initial=0) > 1
                                                  for lab in labels)
        return "boundary" if instances else "foreground"
    if target == "boundary" and (label_mode != "dense" or n_classes not in (1, 3)):
        raise ValueError("target 'boundary' learns from dense instance labels (0 = background, "
                         "1..n = objects) with a 3-class network (or the default config, which "
                         f"becomes one); got label_mode={label_mode!r} and n_classes={n_classes}.")
    if target == "foreground" and n_classes != 1:
        raise ValueError(f"target 'foreground' needs a network with one output (n_classes=1); "
                         f"got n_classes={n_classes}. Use target 'classes'.")
    if target == "classes" and n_classes < 2:
        raise ValueError("target 'classes' needs a network with n_classes >= 2; build one with "
                         "more classes, or use target 'foreground' or 'boundary'.")
    return target


def labels_warning(target: str, label_mode: str, labels: Sequence[Any]) -> str:
    """A sentence when a ``"boundary"`` network learns from dense ``labels`` that are all 0/1
    masks (e.g. continuing one, or ``target="boundary"`` asked for): objects that touch in
    them are one object, so it learns not to split them; ``""`` otherwise."""
    if target != "boundary" or label_mode != "dense" or any(
            np.max(np.asarray(lab), initial=0) > 1 for lab in labels):
        return ""
    return ("The labels it learnt from are 0/1 masks (every object has id 1): objects that "
            "touch in them count as one, so it learns not to split touching objects. Give "
            "each object its own id (instance labels; skimage.measure.label makes them from "
            "a mask whose objects do not touch) and train again.")


def largest_object(target: str, label_mode: str, labels: Sequence[Any]) -> int | None:
    """The widest object of dense ``labels`` in pixels: the longest side, in Y or X, of any
    object's bounding box (objects: the ids; the connected regions of 0/1 masks, and of
    class maps for a ``"classes"`` ``target``, in each plane); None for sparse scribbles,
    which outline no whole objects, and 0 without any object. Lazy instance labels take at
    least this much context around each block
    (`napari_unet.prediction.lazy_labels.label_halo`)."""
    from scipy import ndimage as ndi

    if label_mode != "dense":
        return None
    widest = 0
    for lab in labels:
        lab = np.asarray(lab)
        top = lab.max(initial=0)  # dense labels are >= 0: one pass says empty, mask or ids
        if lab.ndim < 2 or not top:
            continue
        if target == "classes" or top <= 1 or top > lab.size:
            # regions (ids too sparse to index: merged, so wider), plane by plane: an int32
            # label image of a whole uint8 volume would take 4 times its memory
            parts = (ndi.label(plane > 0)[0] for plane in lab.reshape(-1, *lab.shape[-2:]))
        else:
            parts = (lab,)
        for part in parts:
            for box in ndi.find_objects(part):
                if box is not None:
                    widest = max(widest, *(s.stop - s.start for s in box[-2:]))
    return widest


def class_weights(targets: Sequence[np.ndarray], n_classes: int) -> list[float]:
    """Per-class loss weights that lift rare classes: ``freq ** -0.5``, scaled so the
    annotated pixels keep a mean weight of 1 (absent classes get weight 1)."""
    counts = np.zeros(n_classes, np.float64)
    for t in targets:
        counts += np.bincount(t[t >= 0].astype(np.int64), minlength=n_classes)[:n_classes]
    freq = counts / max(counts.sum(), 1.0)
    raw = np.where(freq > 0, np.maximum(freq, 1e-6) ** -0.5, 0.0)
    scale = (freq * raw).sum()
    weights = np.where(freq > 0, raw / max(scale, 1e-12), 1.0)
    return [round(float(w), 4) for w in weights]


def check_targets(targets: Sequence[np.ndarray], n_classes: int, mode: str) -> None:
    """Raise ``ValueError`` unless the targets hold at least two annotated classes."""
    annotated = sum(int(np.count_nonzero(t >= 0)) for t in targets)
    if annotated == 0:
        raise ValueError(
            "The labels contain no annotated pixels; paint background (1) and "
            "objects (2) strokes before training."
        )
    present = set()
    for t in targets:
        present.update(np.unique(t[t >= 0]).astype(int).tolist())
    if len(present) < 2:
        if mode == "dense":
            hint = (
                "the labels are empty: paint some objects (values > 0) on the labels layer"
                if present == {0}
                else "every pixel is foreground: leave some background (0)"
            )
        else:
            hint = "paint background strokes with label 1 and objects with label 2"
        raise ValueError(f"Training needs at least two classes in the labels; {hint}.")


def prepare_training_data(
    images: Sequence[Any],
    labels: Sequence[Any],
    config: UNetConfig,
    label_mode: str,
    normalization: PercentileNormalization,
    axes: Sequence[str | None] | None = None,
    names: Sequence[str] | None = None,
    target: str = "foreground",
    boundary_width: int = 2,
) -> TrainingData:
    """Check, normalise and encode image/label pairs; returns their `TrainingData`.

    Each image may be 2D (YX) or a stack (ZYX, TYX, TZYX, optionally with a
    channel axis); its labels have the same spatial shape. Only planes that
    carry annotation are used (for dense labels: planes with any label > 0).
    ``names`` (e.g. file names) are used in error messages instead of "image 2".
    ``target`` (`choose_target`): for ``"boundary"`` the instance ids become
    background / interior / boundary classes, the band ``boundary_width`` px wide.
    """
    if len(images) != len(labels):
        raise ValueError(
            f"Got {len(images)} images but {len(labels)} label arrays; give one labels "
            "array per image."
        )
    if not images:
        raise ValueError("No training images given.")
    axes = list(axes) if axes is not None else [None] * len(images)
    out_x, out_y, out_labels, sources = [], [], [], []
    for i, (image, label, ax) in enumerate(zip(images, labels, axes)):
        what = (f"image {names[i]!r}" if names is not None
                else f"image {i + 1}" if len(images) > 1 else "image")
        image = arrays.check_image(image, what)
        ax = arrays.resolve_axes(ax, image.shape, config.in_channels)
        arrays.check_channels(ax, image.shape, config.in_channels, what)
        planes, lead = arrays.to_planes(image, ax)
        spatial = tuple(s for s, a in zip(image.shape, ax) if a != "C")
        label = arrays.check_labels(label, spatial, f"labels of {what}")
        label_planes = label.reshape((-1,) + label.shape[-2:])
        stats = normalization.statistics(planes)
        for k, (plane, lab) in enumerate(zip(planes, label_planes)):
            single_dense = label_mode == "dense" and len(label_planes) == 1
            if not (single_dense or np.any(lab > 0)):
                continue
            out_x.append(normalization.apply(plane[None], stats)[0])
            out_labels.append(lab)
            sources.append(_plane_source(i, k, lead, [a for a in ax if a not in "YXC"]))
            if target == "boundary":
                lab = boundary_classes(lab, boundary_width)
            out_y.append(encode_targets(lab, config.n_classes, label_mode))
    if not out_x:
        raise ValueError(
            "The labels contain no annotated pixels; paint some objects (or, for "
            "scribbles, background 1 and objects 2) before training."
        )
    check_targets(out_y, config.n_classes, label_mode)
    return TrainingData(out_x, out_y, out_labels, sources)


def _plane_source(image: int, k: int, lead: tuple[int, ...], lead_axes: list[str]) -> PlaneSource:
    """The `PlaneSource` of plane ``k`` of image ``image``, whose leading axes are
    ``lead_axes`` with sizes ``lead``."""
    index = np.unravel_index(k, lead) if lead else ()
    z = int(index[lead_axes.index("Z")]) if "Z" in lead_axes else -1
    return PlaneSource(image, tuple(int(i) for i, a in zip(index, lead_axes) if a != "Z"), z)


def linked_stacks(sources: Sequence[PlaneSource], truths: Sequence[np.ndarray],
                  min_planes: int = 3) -> list[list[int]]:
    """Runs of at least ``min_planes`` training planes that hold 3D instance labels: consecutive
    Z planes of one stack where, between neighbouring planes, at least 90 % of the foreground
    pixels that overlap carry the same id (objects continue across Z rather than being
    numbered plane by plane). Returns the runs as lists of plane indices, in Z order."""
    stacks = defaultdict(list)
    for i, source in enumerate(sources):
        if source.z >= 0:
            stacks[(source.image, source.stack)].append(i)
    runs = []
    for members in stacks.values():
        members.sort(key=lambda i: sources[i].z)
        run = members[:1]
        for i in members[1:]:
            before = run[-1]
            if sources[i].z == sources[before].z + 1 and _continues(truths[before], truths[i]):
                run.append(i)
                continue
            runs.append(run)
            run = [i]
        runs.append(run)
    return [run for run in runs if len(run) >= min_planes]


def _continues(below: np.ndarray, above: np.ndarray) -> bool:
    """Whether 90 % of the foreground pixels of two neighbouring planes that overlap share an id."""
    both = (below > 0) & (above > 0)
    return bool(both.any()) and np.count_nonzero(both & (below == above)) >= 0.9 * both.sum()
