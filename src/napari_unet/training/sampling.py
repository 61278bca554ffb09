"""Held-out validation blocks and random augmented training patches.

Targets are float32 ``(H, W)`` arrays holding a class index per pixel (0 =
background) or ``IGNORE`` (-1) where the pixel is not annotated or is
padding; the loss skips ``IGNORE``. Batches are float32 ``(B, P, P, C)``
images and ``(B, P, P, 1)`` targets (``(B, P, P, 2)`` with a pixel-weight channel, see
`PatchSampler`). `held_out_and_sampler` is the training job's step. Nothing here
modifies its inputs.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from .augmentation import Augmentation
from .data import IGNORE, TrainingData, check_targets

__all__ = ["HeldOut", "held_out_and_sampler", "focus_and_weights", "split_validation", "held_blocks", "grid_patches",
           "PatchSampler", "validation_split"]


class HeldOut(NamedTuple):
    """The training targets with the validation blocks ignored (``targets``), the
    validation patches ``(x, y)`` or None (``validation``) and the `PatchSampler`."""

    targets: list[np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None
    sampler: PatchSampler


def held_out_and_sampler(unet: Any, settings: Any, data: TrainingData, parallel: Any) -> HeldOut:
    """Hold out validation blocks of the `TrainingData` (larger for boundary targets, so
    whole objects fall inside; the same blocks in every Z plane of a stack) and make the
    patch sampler of the rest (which, for boundary targets, shows the seams of touching
    objects more often, and with a border weight (`TrainSettings.border_weight_for`) gives its batches a weight
    channel; validation stays unweighted). ``unet``: the `UNetModel` to train;
    ``settings``: its `TrainSettings`; ``parallel``: the data-parallel plan or None."""
    rng = _seeded_rng(settings.seed)
    block = max(unet.config.size_multiple,
                settings.patch_size // (2 if unet.target == "boundary" else 4))
    groups = [(s.image, s.stack) if s.z >= 0 else i for i, s in enumerate(data.sources)]
    targets, validation = split_validation(data.images, data.targets,
                                           settings.validation_fraction, block,
                                           settings.patch_size, unet.config.n_classes,
                                           settings.label_mode, rng, groups)
    focus, weights = focus_and_weights(unet, settings, data.truths, targets)
    sampler = PatchSampler(data.images, targets, settings.patch_size, settings.batch_size,
                           settings.augment, rng, focus, weights)
    return HeldOut(targets, _split_evenly(validation, parallel), sampler)


def focus_and_weights(unet: Any, settings: Any, truths: Sequence[np.ndarray],
                      targets: Sequence[np.ndarray], samplings: Sequence[Any] | None = None
                      ) -> tuple[list | None, list | None]:
    """``(focus, weights)`` of a sampler (planes or volumes): for a boundary network the
    seams of touching objects among the pixels still trained on (``targets`` >= 0), and
    with a border weight (`TrainSettings.border_weight_for`) the U-Net paper's weights
    of the ``truths``, with distances in each truth's relative pixel sizes ``samplings``
    (None: 1 per axis); None for what does not apply."""
    from scipy import ndimage as ndi

    from ..labels.targets import border_weights, touching_seams

    focus = weights = None
    if unet.target == "boundary":
        focus = [touching_seams(t, settings.boundary_width) & (kept >= 0)
                 for t, kept in zip(truths, targets)]
    w0 = settings.border_weight_for(unet.target)
    if w0:  # 0/1 masks: each connected object is one (the paper's case)
        samplings = samplings or [None] * len(truths)
        weights = [border_weights(t if t.max() > 1 else ndi.label(t > 0)[0], w0,
                                  settings.border_sigma, sampling)
                   for t, sampling in zip(truths, samplings)]
    return focus, weights


def _seeded_rng(seed: int | None) -> np.random.Generator:
    """The patch sampler's random generator; with a seed, Keras' dropout is seeded too."""
    if seed is not None:
        from ..backend.runtime import load_keras

        load_keras().utils.set_random_seed(int(seed))
    return np.random.default_rng(seed)


def _split_evenly(validation: Any, parallel: Any) -> Any:
    """The validation patches, a multiple of the data-parallel devices in number (every
    batch must split evenly); None when fewer than that are left."""
    if parallel is None or validation is None:
        return validation
    keep = len(validation[0]) // parallel.devices * parallel.devices
    return (validation[0][:keep], validation[1][:keep]) if keep else None


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
    augment : an `napari_unet.training.augmentation.Augmentation`, or True (its defaults) / False.
    rng : source of randomness (seeded for reproducible training).
    focus : optional boolean ``(H, W)`` masks, one per image, of pixels to show more
        often (where touching objects meet, for the boundary target).
    weights : optional float32 ``(H, W)`` extra loss weights, one per image
        (`napari_unet.labels.targets.border_weights`); the targets of the batches then
        have them as a second channel, ``(B, P, P, 2)``.

    Half of the patches are centred on a random annotated pixel, so sparse
    scribbles are seen often (with ``focus``, half of those on a focus pixel); the
    rest are uniform over the image.
    """

    def __init__(self, images, targets, patch_size: int, batch_size: int, augment: Any,
                 rng: np.random.Generator, focus: Sequence[np.ndarray] | None = None,
                 weights: Sequence[np.ndarray] | None = None):
        self.patch_size, self.batch_size, self.rng = patch_size, batch_size, rng
        self.shape = (patch_size, patch_size)
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
