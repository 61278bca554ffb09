"""Training data: user labels turned into targets, a held-out validation part, and
random augmented patches.

Targets are float32 ``(H, W)`` arrays holding a class index per pixel (0 =
background) or ``IGNORE`` (-1) where the pixel is not annotated or is
padding; the loss skips ``IGNORE``. Batches are float32 ``(B, P, P, C)``
images and ``(B, P, P, 1)`` targets (``(B, P, P, 2)`` with a pixel-weight channel, see
`PatchSampler`). Nothing here modifies its inputs.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from . import arrays
from .augmentation import Augmentation
from .boundaries import boundary_classes
from .config import UNetConfig
from .normalization import PercentileNormalization

IGNORE = -1.0


class PlaneSource(NamedTuple):
    """Where a training plane comes from: its ``image`` (index in the list), its ``stack``
    (indices along the leading axes other than Z, e.g. ``(t,)``; ``()`` for none) and ``z``
    (its index along Z, -1 when the image has no Z axis)."""

    image: int
    stack: tuple[int, ...]
    z: int


LABEL_MODES = ("dense", "sparse")
TARGETS = ("auto", "foreground", "classes", "boundary")


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
    boundary made from instance ids, see `napari_unet.boundaries`). ``"auto"``
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


def validation_split(
    target: np.ndarray, fraction: float, block: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Hold out square blocks of annotated pixels for validation.

    Takes a float32 ``(H, W)`` target and returns ``(train_target, val_target)``:
    the held-out blocks are ``IGNORE`` in the training target and are the only
    annotated pixels of the validation target, so validation measures labels the
    network never learnt from (the image itself stays visible as context).
    About ``fraction`` of the blocks that hold annotations are chosen;
    ``val_target`` is None when ``fraction`` is 0 or there are too few blocks.
    """
    held = held_blocks(target >= 0, fraction, block, rng)
    if held is None:
        return target, None
    return _hold_out(target, held)


def held_blocks(annotated: np.ndarray, fraction: float, block: int, rng: np.random.Generator
                ) -> np.ndarray | None:
    """Boolean ``(H, W)`` mask of about ``fraction`` of the ``block``-pixel squares that hold
    ``annotated`` pixels (never all of them), or None when ``fraction`` is 0 or there are
    fewer than two such squares."""
    if fraction <= 0:
        return None
    h, w = annotated.shape
    blocks = [(y0, x0) for y0 in range(0, h, block) for x0 in range(0, w, block)
              if annotated[y0:y0 + block, x0:x0 + block].any()]
    n_val = int(round(len(blocks) * fraction))
    if len(blocks) < 2 or n_val < 1:
        return None
    chosen = rng.choice(len(blocks), size=min(n_val, len(blocks) - 1), replace=False)
    held = np.zeros(annotated.shape, bool)
    for i in chosen:
        y0, x0 = blocks[int(i)]
        held[y0:y0 + block, x0:x0 + block] = True
    return held


def _hold_out(target: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(train_target, val_target)``: ``target`` with the ``held`` pixels ignored, and
    with only them."""
    train_target = np.where(held, IGNORE, target).astype(np.float32)
    val_target = np.where(held, target, IGNORE).astype(np.float32)
    return train_target, val_target


def _pad_to(image: np.ndarray, target: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad image (reflect) and target (IGNORE) so both spatial sides are >= ``size``."""
    ph, pw = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if ph == 0 and pw == 0:
        return image, target
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    target = np.pad(target, ((0, ph), (0, pw)), constant_values=IGNORE)
    return image, target


def _padded(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``array`` (H, W) zero-padded at the bottom and right to ``shape`` (as `_pad_to` pads
    the targets)."""
    out = np.zeros(shape, array.dtype)
    out[:array.shape[0], :array.shape[1]] = array
    return out


def grid_patches(
    images: Sequence[np.ndarray], targets: Sequence[np.ndarray], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(H, W, C)`` images and ``(H, W)`` targets into non-overlapping patches.

    Returns ``(x, y)`` shaped ``(N, size, size, C)`` and ``(N, size, size, 1)``;
    borders are padded, padded target pixels are ``IGNORE``.
    """
    xs, ys = [], []
    for image, target in zip(images, targets):
        h = -(-image.shape[0] // size) * size
        w = -(-image.shape[1] // size) * size
        image = np.pad(image, ((0, h - image.shape[0]), (0, w - image.shape[1]), (0, 0)),
                       mode="symmetric")
        target = np.pad(target, ((0, h - target.shape[0]), (0, w - target.shape[1])),
                        constant_values=IGNORE)
        for y0 in range(0, h, size):
            for x0 in range(0, w, size):
                t = target[y0:y0 + size, x0:x0 + size]
                if np.any(t >= 0):
                    xs.append(image[y0:y0 + size, x0:x0 + size])
                    ys.append(t[..., None])
    if not xs:
        return (np.zeros((0, size, size, images[0].shape[-1]), np.float32),
                np.zeros((0, size, size, 1), np.float32))
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


class PatchSampler:
    """Draw random training batches from normalised images and their targets.

    Parameters
    ----------
    images : list of float32 ``(H, W, C)`` arrays (already normalised).
    targets : list of float32 ``(H, W)`` arrays (class index or ``IGNORE``).
    patch_size : side of the square patches in pixels.
    batch_size : patches per batch.
    augment : an `napari_unet.augmentation.Augmentation`, or True (its defaults) / False.
    rng : source of randomness (seeded for reproducible training).
    focus : optional boolean ``(H, W)`` masks, one per image, of pixels to show more
        often (where touching objects meet, for the boundary target).
    weights : optional float32 ``(H, W)`` extra loss weights, one per image
        (`napari_unet.boundaries.border_weights`); the targets of the batches then
        have them as a second channel, ``(B, P, P, 2)``.

    Half of the patches are centred on a random annotated pixel, so sparse
    scribbles are seen often (with ``focus``, half of those on a focus pixel); the
    rest are uniform over the image.
    """

    def __init__(self, images, targets, patch_size: int, batch_size: int, augment: Any,
                 rng: np.random.Generator, focus: Sequence[np.ndarray] | None = None,
                 weights: Sequence[np.ndarray] | None = None):
        self.patch_size, self.batch_size, self.rng = patch_size, batch_size, rng
        self.augment = Augmentation.from_setting(augment)
        self.images, self.targets, self.annotated = [], [], []
        for image, target in zip(images, targets):
            image, target = _pad_to(image, target, patch_size)
            self.images.append(image)
            self.targets.append(target)
            self.annotated.append(np.flatnonzero(target >= 0))
        if weights is not None and [np.shape(w) for w in weights] != [np.shape(t)
                                                                       for t in targets]:
            raise ValueError("weights must be one (H, W) map per target, shaped like it; got "
                             f"{[np.shape(w) for w in weights]} for targets "
                             f"{[np.shape(t) for t in targets]}.")
        self.pixel_weights = None if weights is None else [
            np.where(t >= 0, _padded(np.asarray(w, np.float32), t.shape), np.float32(0))
            for w, t in zip(weights, self.targets)]
        self.focus = [None] * len(self.targets)
        for i, mask in enumerate(focus or []):
            self.focus[i] = np.flatnonzero(_padded(mask, self.targets[i].shape))
        areas = np.array([t.size for t in self.targets], dtype=float)
        self.weights = areas / areas.sum()
        self.channels = self.images[0].shape[-1]

    def batch(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` shaped ``(B, P, P, C)`` and ``(B, P, P, 1)`` (``(B, P, P, 2)``
        with ``weights``), float32, drawn with ``rng`` (default: the sampler's own
        generator)."""
        p = self.patch_size
        rng = self.rng if rng is None else rng
        x = np.empty((self.batch_size, p, p, self.channels), np.float32)
        y = np.empty((self.batch_size, p, p, 1 if self.pixel_weights is None else 2), np.float32)
        for i in range(self.batch_size):
            j = int(rng.choice(len(self.images), p=self.weights))
            image, target = self.images[j], self.targets[j]
            h, w = target.shape
            annotated = self.annotated[j]
            if self.focus[j] is not None and self.focus[j].size and rng.random() < 0.5:
                annotated = self.focus[j]
            if annotated.size and rng.random() < 0.5:
                cy, cx = np.unravel_index(annotated[rng.integers(annotated.size)], (h, w))
                y0 = int(np.clip(cy - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, h - p))
                x0 = int(np.clip(cx - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, w - p))
            else:
                y0, x0 = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            x[i] = image[y0:y0 + p, x0:x0 + p]
            y[i, ..., 0] = target[y0:y0 + p, x0:x0 + p]
            if self.pixel_weights is not None:
                y[i, ..., 1] = self.pixel_weights[j][y0:y0 + p, x0:x0 + p]
        if self.augment.any:
            x, y = self.augment.apply(x, y, rng)
        return x, y


    def stream(self, workers: int = 1, ahead: int = 4) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches without end, made ``ahead`` batches in advance on ``workers`` threads.

        Batch ``k`` is drawn with its own generator seeded from the sampler's
        generator and ``k``, so the sequence is the same for any number of
        workers. Closing the iterator stops the threads.
        """
        from concurrent.futures import ThreadPoolExecutor

        base = int(self.rng.integers(2**63))
        pool = ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix="napari-unet-patches")
        pending: deque = deque()
        k = 0
        try:
            while True:
                while len(pending) < max(1, ahead):
                    pending.append(pool.submit(self.batch, np.random.default_rng([base, k])))
                    k += 1
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


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
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[PlaneSource]]:
    """Check, normalise and encode image/label pairs.

    Each image may be 2D (YX) or a stack (ZYX, TYX, TZYX, optionally with a
    channel axis); its labels have the same spatial shape. Only planes that
    carry annotation are used (for dense labels: planes with any label > 0).
    ``names`` (e.g. file names) are used in error messages instead of "image 2".
    ``target`` (`choose_target`): for ``"boundary"`` the instance ids become
    background / interior / boundary classes, the band ``boundary_width`` px wide.
    Returns normalised float32 ``(H, W, C)`` planes, float32 ``(H, W)`` targets,
    the label planes as given (int, for measuring instances) and each plane's
    `PlaneSource`.
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
    return out_x, out_y, out_labels, sources


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


def split_validation(images: Sequence[np.ndarray], targets: Sequence[np.ndarray], fraction: float,
                     block: int, patch_size: int, n_classes: int, mode: str,
                     rng: np.random.Generator, groups: Sequence[Any] | None = None
                     ) -> tuple[list[np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """Hold out square ``block``-pixel blocks of each target for validation (`held_blocks`).

    Planes with equal ``groups`` entries (e.g. the Z planes of one stack; default: every
    plane alone) hold out the same blocks, so the held-out region of a stack is a set of
    Z columns that 3D objects lie in whole. Returns the training targets and the
    validation patches ``(x_val, y_val)`` cut by `grid_patches` at ``patch_size`` (None
    when nothing was held out). When the held-out blocks would leave the training
    targets with fewer than two classes, everything is trained on.
    """
    groups = list(range(len(targets))) if groups is None else list(groups)
    if len(groups) != len(targets):
        raise ValueError(f"groups must name one group per target; got {len(groups)} for "
                         f"{len(targets)} targets.")
    held = {}
    for group in dict.fromkeys(groups):  # in order of first appearance
        members = [t for t, g in zip(targets, groups) if g == group]
        if len({t.shape for t in members}) > 1:
            raise ValueError(f"The planes of group {group!r} differ in shape "
                             f"({sorted({t.shape for t in members})}); a group is one stack.")
        annotated = np.any([t >= 0 for t in members], axis=0)
        held[group] = held_blocks(annotated, fraction, block, rng)
    train_targets, val_targets = [], []
    for target, group in zip(targets, groups):
        kept, out = (target, None) if held[group] is None else _hold_out(target, held[group])
        train_targets.append(kept)
        val_targets.append(out if out is not None else np.full_like(target, IGNORE))
    try:
        check_targets(train_targets, n_classes, mode)
    except ValueError:  # too few annotations to spare some for validation
        return list(targets), None
    x_val, y_val = grid_patches(images, val_targets, patch_size)
    return train_targets, ((x_val, y_val) if len(x_val) else None)
