"""Training data of a 3D network (`UNetConfig.ndim` 3): volumes instead of planes.

`prepare_volume_data` turns images with a Z axis (ZYX, TZYX, with or without channels)
and their labels into `TrainingData` whose items are volumes: normalised float32
``(Z, H, W, C)`` images, float32 ``(Z, H, W)`` targets (a class per voxel, or
``IGNORE``) and the labels as given. With dense labels a plane of a labelled volume
that holds no object is not annotated (``IGNORE``): label a few planes of a stack and
the rest are ignored, not taken for background. `volume_held_out_and_sampler` holds out
Z columns of ``block`` x ``block`` pixels for validation (3D objects lie in them whole)
and draws random ``(D, P, P)`` patches (`VolumeSampler`), augmented in 3D
(`napari_unet.training.augmentation`). `calibrate_volumes` chooses the model's
`Decoding` on the held-out columns, decoding whole volumes in 3D with the voxel size.

No Qt here; the network runs only through `napari_unet.prediction.tiled`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..common import arrays
from ..labels.targets import boundary_classes
from ..model.config import UNetConfig
from ..model.costs import volume_patch_shape
from .augmentation import Augmentation
from .data import IGNORE, PlaneSource, TrainingData, check_targets, encode_targets
from .sampling import (HeldOut, PatchSampler, _hold_out, _seeded_rng, _split_evenly,
                       focus_and_weights, held_blocks)

__all__ = ["prepare_volume_data", "VolumeSampler", "volume_held_out_and_sampler",
           "calibrate_volumes", "settings_for_volumes"]


def prepare_volume_data(images: Sequence[Any], labels: Sequence[Any], config: UNetConfig,
                        label_mode: str, normalization: Any, axes: Sequence[str | None],
                        names: Sequence[str] | None, target: str,
                        boundary_width: int, spacings: Sequence[Any] | None = None
                        ) -> TrainingData:
    """Check, normalise and encode image/label pairs with a Z axis into volumes (see the
    module docstring); ``ValueError`` says what to change (no Z axis, shapes, no labels).
    ``spacings``: each image's voxel size (None: isotropic), so a boundary target's band
    is ``boundary_width`` finest pixels deep along Z too (`boundary_classes`)."""
    from ..labels.options import relative_sampling

    if len(images) != len(labels):
        raise ValueError(f"Got {len(images)} images but {len(labels)} label arrays; give one "
                         "labels array per image.")
    xs, ys, truths, sources = [], [], [], []
    for i, (image, label, ax) in enumerate(zip(images, labels, axes)):
        what = f"image {names[i]!r}" if names is not None else f"image {i + 1}"
        image = arrays.check_image(image, what)
        ax = arrays.resolve_axes(ax, image.shape, config.in_channels)
        arrays.check_channels(ax, image.shape, config.in_channels, what)
        volumes, lead = arrays.to_units(image, ax, 3)
        spatial = tuple(s for s, a in zip(image.shape, ax) if a != "C")
        label = arrays.check_labels(label, spatial, f"labels of {what}")
        label_volumes = label.reshape((-1,) + label.shape[-3:])
        stats = normalization.statistics(volumes.reshape((-1,) + volumes.shape[-3:]))
        sampling = relative_sampling(spacings[i] if spacings else None, "ZYX")
        for k, (volume, lab) in enumerate(zip(volumes, label_volumes)):
            if not np.any(lab > 0):
                continue
            xs.append(normalization.apply(volume, stats))
            truths.append(lab)
            encoded = encode_targets(boundary_classes(lab, boundary_width, sampling)
                                     if target == "boundary" else lab,
                                     config.n_classes, label_mode)
            if label_mode == "dense":  # planes without objects: not annotated
                encoded[~np.any(lab > 0, axis=(1, 2))] = IGNORE
            ys.append(encoded)
            index = np.unravel_index(k, lead) if lead else ()
            sources.append(PlaneSource(i, tuple(int(n) for n in index), -1))
    if not xs:
        raise ValueError("The labels contain no annotated voxels; label some objects in the "
                         "stack (a few planes are enough) before training.")
    check_targets(ys, config.n_classes, label_mode)
    _warn_if_thin(max(y.shape[0] for y in ys), config)
    return TrainingData(xs, ys, truths, sources)


def _warn_if_thin(planes: int, config: UNetConfig) -> None:
    """A ``RuntimeWarning`` when the deepest stack has fewer planes than half of what the
    network sees along Z: it learns mostly from mirrored padding there."""
    import warnings

    from ..model.costs import receptive_field

    reach = receptive_field(config, "Z")
    if planes < reach // 2:
        warnings.warn(f"The stacks have at most {planes} planes, but this 3D network sees "
                      f"{reach} planes around each voxel: most of its view along Z is "
                      "mirrored padding. For thin stacks a 2D network (objects linked across "
                      "Z) often does as well; or give the network fewer Z levels "
                      "(UNetConfig.for_spacing with the real Z step).", RuntimeWarning,
                      stacklevel=4)


def _pad_volume(image: np.ndarray, target: np.ndarray, shape: tuple[int, ...]):
    """Image (mirrored) and target (``IGNORE``) padded at the end to at least ``shape``."""
    pad = [(0, max(0, s - n)) for s, n in zip(shape, target.shape)]
    if not any(p for _, p in pad):
        return image, target
    return (np.pad(image, pad + [(0, 0)], mode="symmetric"),
            np.pad(target, pad, constant_values=IGNORE))


def _filled(array: np.ndarray, shape: tuple[int, ...], fill: Any) -> np.ndarray:
    """``array`` padded at the end with ``fill`` to ``shape`` (as `_pad_volume` pads)."""
    return np.pad(array, [(0, s - n) for s, n in zip(shape, array.shape)],
                  constant_values=fill)


class VolumeSampler:
    """Random batches of ``(B, D, P, P, C)`` patches of normalised ``images`` (Z, H, W, C)
    and ``(B, D, P, P, 1)`` targets (a second channel of pixel ``weights``, if given), half
    of them centred near an annotated voxel (with ``focus`` masks, half of those on a
    focus voxel: where touching objects meet), augmented by ``augment``
    (`Augmentation`). `batch` and `stream` as `napari_unet.training.sampling.PatchSampler`."""

    def __init__(self, images, targets, shape: tuple[int, int, int], batch_size: int,
                 augment: Any, rng: np.random.Generator, focus=None, weights=None):
        self.shape, self.batch_size, self.rng = tuple(shape), batch_size, rng
        self.augment = Augmentation.from_setting(augment)
        padded = [_pad_volume(x, t, shape) for x, t in zip(images, targets)]
        self.images, self.targets = [p[0] for p in padded], [p[1] for p in padded]
        self.annotated = [np.flatnonzero(t >= 0) for t in self.targets]
        self.focus = [None if f is None else np.flatnonzero(_filled(f, t.shape, False))
                      for f, t in zip(focus or [None] * len(images), self.targets)]
        self.pixel_weights = None if weights is None else [
            np.where(t >= 0, _filled(np.asarray(w, np.float32), t.shape, 0.0), np.float32(0))
            for w, t in zip(weights, self.targets)]
        sizes = np.array([t.size for t in self.targets], float)
        self.weights, self.channels = sizes / sizes.sum(), self.images[0].shape[-1]

    def _corner(self, j: int, rng: np.random.Generator) -> tuple[int, ...]:
        full, annotated = self.targets[j].shape, self.annotated[j]
        if self.focus[j] is not None and self.focus[j].size and rng.random() < 0.5:
            annotated = self.focus[j]
        if annotated.size and rng.random() < 0.5:
            centre = np.unravel_index(annotated[rng.integers(annotated.size)], full)
            return tuple(int(np.clip(c - p // 2 + rng.integers(-(p // 4), p // 4 + 1), 0, n - p))
                         for c, p, n in zip(centre, self.shape, full))
        return tuple(int(rng.integers(n - p + 1)) for p, n in zip(self.shape, full))

    def batch(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng if rng is None else rng
        channels = 1 if self.pixel_weights is None else 2
        x = np.empty((self.batch_size, *self.shape, self.channels), np.float32)
        y = np.empty((self.batch_size, *self.shape, channels), np.float32)
        for i in range(self.batch_size):
            j = int(rng.choice(len(self.images), p=self.weights))
            box = tuple(slice(c, c + p) for c, p in zip(self._corner(j, rng), self.shape))
            x[i], y[i, ..., 0] = self.images[j][box], self.targets[j][box]
            if self.pixel_weights is not None:
                y[i, ..., 1] = self.pixel_weights[j][box]
        return self.augment.apply(x, y, rng) if self.augment.any else (x, y)

    stream = PatchSampler.stream


def grid_volumes(images, targets, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``shape`` patches ``(N, D, P, P, C)``, ``(N, D, P, P, 1)`` of the
    volumes where ``targets`` hold annotated voxels (the ends padded, as `VolumeSampler`)."""
    xs, ys = [], []
    for image, target in zip(images, targets):
        full = tuple(math.ceil(n / s) * s for n, s in zip(target.shape, shape))
        image, target = _pad_volume(image, target, full)
        for corner in np.ndindex(*(n // s for n, s in zip(full, shape))):
            box = tuple(slice(c * s, (c + 1) * s) for c, s in zip(corner, shape))
            if np.any(target[box] >= 0):
                xs.append(image[box])
                ys.append(target[box][..., None])
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


def volume_held_out_and_sampler(unet: Any, settings: Any, data: TrainingData,
                                parallel: Any = None, spacings: Sequence[Any] | None = None
                                ) -> HeldOut:
    """`napari_unet.training.sampling.held_out_and_sampler` for volumes: Z columns of
    ``block`` x ``block`` pixels held out (a share ``settings.validation_fraction`` of
    the annotated ones), validated on in ``(D, P, P)`` patches (`napari_unet.model.costs.volume_patch_shape`), and the
    `VolumeSampler` of the rest (with border weights and seam focus in 3D; border weights
    with each image's voxel size from ``spacings``, one per image, when given)."""
    rng = _seeded_rng(settings.seed)
    shape = volume_patch_shape(unet.config, settings.patch_size, max(t.shape[0] for t in data.targets))
    settings.check_memory(unet.config, shape)
    block = max(unet.config.size_multiple,
                settings.patch_size // (2 if unet.target == "boundary" else 4))
    targets, val_targets = [], []
    for target in data.targets:
        held = held_blocks(np.any(target >= 0, axis=0), settings.validation_fraction, block, rng)
        held = np.zeros(target.shape, bool) if held is None else np.broadcast_to(held, target.shape)
        kept, out = _hold_out(target, held)
        targets.append(kept)
        val_targets.append(out)
    validation = None
    try:
        check_targets(targets, unet.config.n_classes, settings.label_mode)
        if any(np.any(v >= 0) for v in val_targets):
            validation = grid_volumes(data.images, val_targets, shape)
    except ValueError:  # too few annotations to spare some for validation
        targets = list(data.targets)
    samplings = _samplings(data, spacings) if spacings is not None else None
    focus, weights = focus_and_weights(unet, settings, data.truths, targets, samplings)
    sampler = VolumeSampler(data.images, targets, shape, settings.batch_size, settings.augment,
                            rng, focus, weights)
    return HeldOut(targets, _split_evenly(validation, parallel), sampler)


def settings_for_volumes(settings: Any, config: UNetConfig, depth: int, devices: int = 1,
                         free: int | None = None) -> Any:
    """``settings`` (a `TrainSettings`) for training the 3D ``config`` on stacks at most
    ``depth`` planes deep: as given when the user chose the patch or batch size, else the
    2D defaults (128 px, 8 patches) made smaller until the ``(D, P, P)`` patches
    (`napari_unet.model.costs.volume_patch_shape`) train in half of ``free`` bytes
    (default: what one device, GPU else this machine, has free; each of ``devices`` holds
    its share of a batch): the batch halves down to 2 (kept a multiple of ``devices``),
    then the side shrinks by the size multiple (down to one multiple; what still does not
    fit is refused by `TrainSettings.check_memory`). Returns a `TrainSettings`."""
    from dataclasses import fields, replace

    from ..backend.devices import accelerator_memory
    from ..common.log import logger
    from ..model.costs import available_memory, training_memory_bytes

    defaults = {f.name: f.default for f in fields(settings)}
    if (settings.patch_size, settings.batch_size) != (defaults["patch_size"],
                                                      defaults["batch_size"]):
        return settings
    budget = (free if free is not None else accelerator_memory() or available_memory()) // 2
    patch, batch, m = settings.patch_size, settings.batch_size, config.size_multiple
    least_batch = max(2, devices)

    def need() -> int:  # per device: data-parallel training splits each batch
        shape = volume_patch_shape(config, patch, depth)
        return training_memory_bytes(config, shape, max(1, batch // devices))

    while need() > budget:
        if batch // 2 >= least_batch and (batch // 2) % devices == 0:
            batch //= 2
        elif patch - m >= m:
            patch -= m
        else:
            break
    if (patch, batch) != (settings.patch_size, settings.batch_size):
        logger.info("3D training: patches of %s voxels in batches of %d fit %.1f GiB",
                    "x".join(map(str, volume_patch_shape(config, patch, depth))), batch,
                    budget / 2**30)
    return replace(settings, patch_size=patch, batch_size=batch)


def _samplings(data: TrainingData, spacings: Sequence[Any]) -> list:
    """Each volume's relative voxel sizes (`relative_sampling`) from its image's spacing."""
    from ..labels.options import relative_sampling

    return [relative_sampling(spacings[s.image], "ZYX") for s in data.sources]


def calibrate_volumes(unet: Any, settings: Any, data: TrainingData,
                      train_targets: Sequence[np.ndarray], spacings: Sequence[Any]) -> None:
    """After training a 3D ``unet``: predict its training volumes, then (dense labels, unless
    ``settings.calibrate`` is off) choose its `Decoding` on the held-out columns, decoding
    in 3D with each image's voxel size (``spacings``); warnings and the record as
    `napari_unet.training.calibration.calibrate_trained` gives them."""
    from .calibration import _collapse, _record_spacing, finish_calibration, plane_probabilities
    from .decoding_search import calibrate

    probs = plane_probabilities(unet, data.images, axes="ZYXC")
    every = list(range(len(probs)))
    info = dict(unet.info)
    changes: dict[str, Any] = {"linked_decoding": None}
    if settings.label_mode == "dense" and settings.calibrate:
        held = [(y >= 0) & (t < 0) for y, t in zip(data.targets, train_targets)]
        truths = [t if unet.target == "boundary" else (t > 0) for t in data.truths]
        samplings = _samplings(data, spacings)
        result = calibrate(unet, probs, truths, held, [t >= 0 for t in data.targets], samplings)
        if result is not None:
            changes["decoding"], info["calibration"] = result.decoding, result.to_dict()
            _record_spacing(info["calibration"], {spacings[s.image] for s in data.sources})
    info["collapse_warning"] = _collapse(unet, probs, data, every, changes.get("decoding"))
    finish_calibration(unet, info, changes)
