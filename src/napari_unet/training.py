"""Headless training: a generator that yields progress and returns the trained model.

`iter_train` is the engine: it yields a `TrainProgress` after every batch and at
the end of every epoch, checks ``should_stop`` between batches, and returns a
`TrainResult` whose model holds the best validation weights. `train` drains it
(optionally calling ``callback`` with each progress event). The napari widget
runs the same generator in a ``thread_worker``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, NamedTuple, Sequence

import numpy as np

from . import data as D
from .checks import check_switch, is_real, is_whole
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
    names: Sequence[str] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Check, normalise and encode image/label pairs.

    Each image may be 2D (YX) or a stack (ZYX, TYX, TZYX, optionally with a
    channel axis); its labels have the same spatial shape. Only planes that
    carry annotation are used (for dense labels: planes with any label > 0).
    ``names`` (e.g. file names) are used in error messages instead of "image 2".
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
        if names is not None:
            what = f"image {names[i]!r}"
        else:
            what = f"image {i + 1}" if len(images) > 1 else "image"
        image = D.check_image(image, what)
        ax = D.resolve_axes(ax, image.shape, config.in_channels)
        D.check_channels(ax, image.shape, config.in_channels, what)
        planes, _ = D.to_planes(image, ax)
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
    if not is_whole(patch_size) or patch_size < m or patch_size % m:
        raise ValueError(
            f"patch_size must be a positive multiple of 2**depth = {m}; got {patch_size!r}."
        )
    if not is_whole(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1; got {batch_size!r}.")
    if not is_whole(epochs) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1; got {epochs!r}.")
    if not is_real(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a finite number > 0 (e.g. 1e-3); got {learning_rate!r}.")
    if not is_real(validation_fraction) or not 0.0 <= validation_fraction < 1.0:
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
    names: Sequence[str] | None = None,
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
    names : one name per image (e.g. its file name) for error messages.

    If the loss stops being finite, training stops: with the weights of the
    best finite epoch and a ``RuntimeWarning`` (``info["diverged"]`` says what
    happened), or with a ``ValueError`` when no epoch ended finite.
    """
    from .devices import load_keras, make_adam

    keras = load_keras()
    from .losses import MaskedIoU, make_loss

    if isinstance(model, UNetModel):
        unet = model
    elif model is None or isinstance(model, UNetConfig):
        unet = UNetModel.new(model or UNetConfig())
    else:
        raise ValueError(
            f"model must be a UNetConfig (a new network), a UNetModel (continue training) "
            f"or None (the default network); got {type(model).__name__}."
        )
    config = unet.config
    _check_settings(config, patch_size, batch_size, epochs, learning_rate, validation_fraction)
    if loss not in ("bce", "bce_dice"):
        raise ValueError(f"loss must be 'bce' or 'bce_dice'; got {loss!r}.")
    if label_mode not in D.LABEL_MODES:
        raise ValueError(f"label_mode must be one of {D.LABEL_MODES}; got {label_mode!r}.")

    images, labels = _as_list(images), _as_list(labels)
    if axes is None or isinstance(axes, str):
        axes_list = [axes] * len(images)
    elif isinstance(axes, (list, tuple)) and len(axes) == len(images):
        axes_list = list(axes)
    else:
        raise ValueError(f"axes must be one string such as 'YX' for all images, or a list with "
                         f"one per image ({len(images)}); got {axes!r}.")
    if names is not None and len(names) != len(images):
        raise ValueError(f"names must give one name per image ({len(images)}); got {len(names)}.")
    xs, ys = prepare_training_data(images, labels, config, label_mode, unet.normalization,
                                   axes_list, names)

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
    started = time.perf_counter()
    outcome = yield from _fit_loop(km, sampler, (x_val, y_val) if has_val else None, epochs,
                                   steps_per_epoch, batch_size, should_stop)
    if outcome.diverged:
        advice = (f"lower the learning rate (it was {learning_rate:g}; try "
                  f"{learning_rate / 10:g}), or check the images for extreme values")
        if outcome.best_epoch == 0:
            raise ValueError(f"Training diverged: {outcome.diverged}, before any epoch gave a "
                             f"finite result, so there is no usable model; {advice}.")
        warnings.warn(f"Training stopped because {outcome.diverged}; kept the weights of epoch "
                      f"{outcome.best_epoch}, the best finite one. To train further, {advice}.",
                      RuntimeWarning, stacklevel=2)
    history, best_epoch, stopped = outcome.history, outcome.best_epoch, outcome.stopped
    monitor = "val_loss" if has_val else "loss"
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
        "diverged": outcome.diverged,
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


class _FitOutcome(NamedTuple):
    history: dict[str, list[float]]
    best_epoch: int  # 0 when no epoch ended with a finite loss
    stopped: bool
    diverged: str  # "" or what went non-finite, e.g. "the loss became nan at epoch 2, batch 3"


def _fit_loop(km: Any, sampler: D.PatchSampler, validation: tuple | None, epochs: int,
              steps: int, batch_size: int, should_stop: Callable[[], bool] | None):
    """Train ``km`` (compiled) for ``epochs`` x ``steps`` batches, yielding `TrainProgress`.

    ``validation`` is ``(x_val, y_val)`` or None. Stops after the current batch
    when ``should_stop()`` is true, and at once when the loss stops being
    finite. Leaves the weights of the best finite epoch (lowest ``val_loss``,
    else ``loss``) in ``km`` and returns a `_FitOutcome`.
    """
    history: dict[str, list[float]] = {"loss": [], "iou": []}
    if validation is not None:
        history.update(val_loss=[], val_iou=[])
    monitor = "val_loss" if validation is not None else "loss"
    best, best_weights, best_epoch = math.inf, None, 0
    stopped, diverged = False, ""
    for epoch in range(1, epochs + 1):
        sums = {"loss": 0.0, "iou": 0.0}
        for step in range(1, steps + 1):
            raw = km.train_on_batch(*sampler.batch(), return_dict=True)
            if not math.isfinite(float(raw["loss"])):
                diverged = f"the loss became {float(raw['loss'])} at epoch {epoch}, batch {step}"
                break
            # Keras resets its metrics at every train_on_batch: keep the running means here
            sums = {key: sums[key] + float(raw[key]) for key in sums}
            logs = {key: value / step for key, value in sums.items()}
            yield TrainProgress(epoch, epochs, step, steps, "batch", dict(logs))
            stopped = should_stop is not None and bool(should_stop())
            if stopped:
                break
        if diverged:
            break
        if validation is not None:
            raw = km.evaluate(*validation, batch_size=batch_size, verbose=0, return_dict=True)
            logs.update(val_loss=float(raw["loss"]), val_iou=float(raw["iou"]))
        weights = km.get_weights() if logs[monitor] < best else None
        if not math.isfinite(logs[monitor]) or not all(np.isfinite(w).all() for w in weights or []):
            diverged = f"the {monitor} or the weights became non-finite at epoch {epoch}"
            break
        for key in history:
            history[key].append(logs[key])
        if weights is not None:
            best, best_weights, best_epoch = logs[monitor], weights, epoch
        yield TrainProgress(epoch, epochs, step, steps, "epoch", dict(logs))
        if stopped:
            break
    if best_weights is not None:
        km.set_weights(best_weights)
    return _FitOutcome(history, best_epoch, stopped, diverged)


def train(images: Any, labels: Any, model: UNetConfig | UNetModel | None = None, *,
          callback: Callable[[TrainProgress], None] | None = None, verbose: bool = True,
          **kwargs: Any) -> TrainResult:
    """Train like `iter_train` and return its `TrainResult` ``(model, history)``.

    ``callback`` (optional) receives every `TrainProgress` event. ``verbose``
    prints one line per epoch to standard error (and a running batch line on a
    terminal); pass ``verbose=False`` for silence. The other keyword arguments
    are those of `iter_train`.
    """
    from .progress import drain

    verbose = check_switch("verbose", verbose)
    printer = console_progress(sys.stderr) if verbose and sys.stderr is not None else None
    if printer is None:
        report = callback
    else:
        def report(event: TrainProgress) -> None:
            printer(event)
            if callback is not None:
                callback(event)
    return drain(iter_train(images, labels, model, **kwargs), report)


def console_progress(stream: Any) -> Callable[[TrainProgress], None]:
    """A callback writing training progress to ``stream``: an in-place batch line when
    ``stream`` is a terminal, and one line per epoch with its losses and elapsed time."""
    started = time.perf_counter()
    tty = hasattr(stream, "isatty") and stream.isatty()

    def show(event: TrainProgress) -> None:
        if event.phase == "batch":
            if tty:
                stream.write(f"\repoch {event.epoch}/{event.epochs} batch {event.batch}/"
                             f"{event.batches} loss {event.logs['loss']:.4f}")
                stream.flush()
            return
        values = " ".join(f"{k} {v:.4f}" for k, v in event.logs.items())
        stream.write(f"{chr(13) if tty else ''}epoch {event.epoch}/{event.epochs}: {values} "
                     f"({time.perf_counter() - started:.0f} s)\n")
        stream.flush()

    return show
