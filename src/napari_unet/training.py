"""Headless training: a generator that yields progress and returns the trained model.

`iter_train` is the engine: it yields a `TrainProgress` after every batch and at
the end of every epoch, checks ``should_stop`` between batches, and returns a
`TrainResult` whose model holds the best validation weights. `train` drains it
(optionally calling ``callback`` with each progress event). The napari widget
runs the same generator in a ``thread_worker``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, NamedTuple, Sequence

import numpy as np

from . import data as D
from .config import UNetConfig
from .model import UNetModel

__all__ = ["TrainProgress", "TrainResult", "iter_train", "train"]


@dataclass
class TrainProgress:
    """One progress event. ``epoch`` and ``batch`` count from 1.

    ``phase`` is ``"batch"`` after a training step and ``"epoch"`` after the
    epoch's validation; ``logs`` holds running means of ``loss`` and ``iou``
    (and at epoch end ``val_loss``, ``val_iou``).
    """

    epoch: int
    epochs: int
    batch: int
    batches: int
    phase: str
    logs: dict[str, float] = field(default_factory=dict)


class TrainResult(NamedTuple):
    model: UNetModel
    history: dict[str, list[float]]


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def prepare_training_data(
    images: Sequence[Any],
    labels: Sequence[Any],
    config: UNetConfig,
    label_mode: str,
    normalization: D.PercentileNormalization,
    axes: Sequence[str | None] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Check, normalise and encode image/label pairs.

    Each image may be 2D (YX) or a stack (ZYX, TYX, TZYX, optionally with a
    channel axis); its labels have the same spatial shape. Only planes that
    carry annotation are used (for dense labels: planes with any label > 0).
    Returns normalised float32 ``(H, W, C)`` planes and float32 ``(H, W)`` targets.
    """
    if len(images) != len(labels):
        raise ValueError(
            f"Got {len(images)} images but {len(labels)} label arrays; give one labels "
            "array per image."
        )
    if not images:
        raise ValueError("No training images given.")
    axes = list(axes) if axes is not None else [None] * len(images)
    out_x, out_y = [], []
    for i, (image, label, ax) in enumerate(zip(images, labels, axes)):
        what = f"image {i + 1}" if len(images) > 1 else "image"
        image = D.check_image(image, what)
        ax = D.resolve_axes(ax, image.shape, config.in_channels)
        planes, _ = D.to_planes(image, ax)
        if planes.shape[-1] != config.in_channels:
            raise ValueError(
                f"The {what} has {planes.shape[-1]} channel(s) (axes {ax}, shape "
                f"{image.shape}) but the model expects {config.in_channels}; build a "
                f"model with in_channels={planes.shape[-1]} or choose another image."
            )
        spatial = tuple(s for s, a in zip(image.shape, ax) if a != "C")
        label = D.check_labels(label, spatial, f"labels of {what}")
        label_planes = label.reshape((-1,) + label.shape[-2:])
        stats = normalization.statistics(planes)
        for plane, lab in zip(planes, label_planes):
            single_dense = label_mode == "dense" and len(label_planes) == 1
            if not (single_dense or np.any(lab > 0)):
                continue
            out_x.append(normalization.apply(plane[None], stats)[0])
            out_y.append(D.encode_targets(lab, config.n_classes, label_mode))
    if not out_x:
        raise ValueError(
            "The labels contain no annotated pixels; paint some objects (or, for "
            "scribbles, background 1 and objects 2) before training."
        )
    D.check_targets(out_y, config.n_classes, label_mode)
    return out_x, out_y


def _check_settings(config: UNetConfig, patch_size: int, batch_size: int, epochs: int,
                    learning_rate: float, validation_fraction: float) -> None:
    m = config.size_multiple
    if not isinstance(patch_size, int) or patch_size < m or patch_size % m:
        raise ValueError(
            f"patch_size must be a positive multiple of 2**depth = {m}; got {patch_size!r}."
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1; got {batch_size!r}.")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1; got {epochs!r}.")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}.")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1); got {validation_fraction!r}.")


def iter_train(
    images: Any,
    labels: Any,
    model: UNetConfig | UNetModel | None = None,
    *,
    patch_size: int = 128,
    batch_size: int = 8,
    epochs: int = 20,
    steps_per_epoch: int | None = None,
    learning_rate: float = 1e-3,
    validation_fraction: float = 0.15,
    loss: str = "bce",
    label_mode: str = "dense",
    augment: bool = True,
    axes: Sequence[str | None] | str | None = None,
    seed: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train a U-Net, yielding `TrainProgress`; the generator returns a `TrainResult`.

    Parameters
    ----------
    images, labels : one array or a list of arrays. Images are YX (or stacks,
        see `prepare_training_data`); labels are integer arrays of the same
        spatial shape. ``label_mode="dense"``: 0 = background, > 0 = objects
        (or class ids). ``label_mode="sparse"``: 0 = unlabelled, 1 = background,
        2.. = classes.
    model : a `UNetConfig` (a new network is built), a `UNetModel` (training
        continues from its weights, in place) or None (default config).
    patch_size : side in pixels of the random training patches (multiple of 2**depth).
    batch_size, epochs, learning_rate : Adam optimisation settings.
    steps_per_epoch : batches per epoch; default covers the annotated pixels
        about twice, at least 10.
    validation_fraction : share of annotated blocks held out for validation.
    loss : ``"bce"`` (cross-entropy) or ``"bce_dice"`` (plus soft Dice).
    augment : random flips and 90-degree rotations of each patch.
    seed : makes patch sampling, augmentation and dropout reproducible.
    should_stop : called between batches; when it returns True training ends
        after the current batch, validates, and keeps the best weights.
    """
    from .devices import load_keras, make_adam

    keras = load_keras()
    from .losses import MaskedIoU, make_loss

    if isinstance(model, UNetModel):
        unet = model
    else:
        config = model if isinstance(model, UNetConfig) else UNetConfig()
        if not isinstance(config, UNetConfig):
            raise ValueError(
                f"model must be a UNetConfig, a UNetModel or None; got {type(model).__name__}."
            )
        unet = UNetModel.new(config)
    config = unet.config
    _check_settings(config, patch_size, batch_size, epochs, learning_rate, validation_fraction)
    if loss not in ("bce", "bce_dice"):
        raise ValueError(f"loss must be 'bce' or 'bce_dice'; got {loss!r}.")
    if label_mode not in D.LABEL_MODES:
        raise ValueError(f"label_mode must be one of {D.LABEL_MODES}; got {label_mode!r}.")

    images, labels = _as_list(images), _as_list(labels)
    axes_list = [axes] * len(images) if axes is None or isinstance(axes, str) else list(axes)
    xs, ys = prepare_training_data(images, labels, config, label_mode, unet.normalization, axes_list)

    rng = np.random.default_rng(seed)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    block = max(config.size_multiple, patch_size // 4)
    train_targets, val_targets = [], []
    for y in ys:
        t, v = D.validation_split(y, validation_fraction, block, rng)
        train_targets.append(t)
        if v is not None:
            val_targets.append(v)
        else:
            val_targets.append(np.full_like(y, D.IGNORE))
    try:
        D.check_targets(train_targets, config.n_classes, label_mode)
    except ValueError:  # too few annotations to spare some for validation
        train_targets, val_targets = ys, [np.full_like(y, D.IGNORE) for y in ys]
    x_val, y_val = D.grid_patches(xs, val_targets, patch_size)
    has_val = len(x_val) > 0

    sampler = D.PatchSampler(xs, train_targets, patch_size, batch_size, augment, rng)
    annotated = sum(int(np.count_nonzero(t >= 0)) for t in train_targets)
    if steps_per_epoch is None:
        steps_per_epoch = max(10, math.ceil(2 * annotated / (patch_size**2 * batch_size)))
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a whole number >= 1; got {steps_per_epoch!r}.")

    km = unet.keras_model
    km.compile(
        optimizer=make_adam(learning_rate),
        loss=make_loss(loss),
        metrics=[MaskedIoU(threshold=unet.threshold)],
    )
    history: dict[str, list[float]] = {"loss": [], "iou": []}
    if has_val:
        history.update(val_loss=[], val_iou=[])
    monitor = "val_loss" if has_val else "loss"
    best, best_weights, best_epoch = math.inf, None, 0
    stopped = False
    started = time.perf_counter()

    for epoch in range(1, epochs + 1):
        km.reset_metrics()
        logs: dict[str, float] = {}
        for step in range(1, steps_per_epoch + 1):
            x, y = sampler.batch()
            raw = km.train_on_batch(x, y, return_dict=True)
            logs = {"loss": float(raw["loss"]), "iou": float(raw["iou"])}
            yield TrainProgress(epoch, epochs, step, steps_per_epoch, "batch", dict(logs))
            if should_stop is not None and should_stop():
                stopped = True
                break
        if has_val:
            raw = km.evaluate(x_val, y_val, batch_size=batch_size, verbose=0, return_dict=True)
            logs.update(val_loss=float(raw["loss"]), val_iou=float(raw["iou"]))
        for key in history:
            history[key].append(logs[key])
        if logs[monitor] < best or best_weights is None:
            best, best_epoch = logs[monitor], epoch
            best_weights = km.get_weights()
        yield TrainProgress(epoch, epochs, step, steps_per_epoch, "epoch", dict(logs))
        if stopped:
            break

    km.set_weights(best_weights)
    from . import __version__

    unet.history = history
    unet.info = {
        **unet.info,
        "napari_unet_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_seconds": round(time.perf_counter() - started, 2),
        "epochs_run": len(history["loss"]),
        "best_epoch": best_epoch,
        "monitor": monitor,
        "stopped_early": stopped,
        "patch_size": patch_size,
        "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch,
        "learning_rate": learning_rate,
        "loss": loss,
        "label_mode": label_mode,
        "augment": augment,
        "validation_fraction": validation_fraction,
    }
    return TrainResult(unet, history)


def train(images: Any, labels: Any, model: UNetConfig | UNetModel | None = None, *,
          callback: Callable[[TrainProgress], None] | None = None, **kwargs: Any) -> TrainResult:
    """Train like `iter_train` and return its `TrainResult` ``(model, history)``.

    ``callback`` (optional) receives every `TrainProgress` event; the other
    keyword arguments are those of `iter_train`.
    """
    from .progress import drain

    return drain(iter_train(images, labels, model, **kwargs), callback)
