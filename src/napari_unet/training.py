"""Training: a generator that yields progress and returns the trained model.

`iter_train` is the training job: a short sequence of named steps (resolve
the model, check the settings, prepare the data, hold out validation, sample
patches, fit with the best weights kept, record provenance). It yields a
`TrainProgress` after every batch and epoch, checks ``should_stop`` between
batches, and returns a `TrainResult`. `train` drains it; the engine process
behind the napari widgets drains the same generator.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Generator, NamedTuple, Sequence

import numpy as np

from . import arrays
from .checks import check_switch, check_whole, is_real, is_whole
from .config import UNetConfig
from .fit_loop import FitOutcome, fit_events
from .model import UNetModel, build_unet
from .progress import TrainProgress, drain
from .scribbles import annotation_record
from .training_data import (LABEL_MODES, TARGETS, PatchSampler, choose_target, linked_stacks,
                            class_weights, prepare_training_data, split_validation)

__all__ = ["TrainResult", "TrainSettings", "iter_train", "train", "console_progress"]

LOSSES = ("bce", "bce_dice")


class TrainResult(NamedTuple):
    model: UNetModel
    history: dict[str, list[float]]


MIN_AUTO_BATCHES, MAX_AUTO_BATCHES = 200, 2000  # batches in all when epochs are automatic
MAX_AUTO_EPOCHS = 1000  # automatic epochs with a time budget
LINKED_VOXELS = 4_000_000  # at most this many voxels of 3D labels calibrate linked decoding


@dataclass(frozen=True)
class TrainSettings:
    """How to train (the keyword arguments of `iter_train`), checked when created.

    ``patch_size`` (side in pixels of the random patches, a multiple of
    2**depth), ``batch_size``, ``epochs`` (None: sized from the annotated pixels
    and ``time_budget``, see `schedule`), ``learning_rate`` (Adam),
    ``steps_per_epoch`` (default: the annotated pixels about twice, at least
    10), ``validation_fraction`` (share of annotated blocks held out), ``loss``
    (``"bce"`` or ``"bce_dice"``), ``label_mode``, ``augment`` (True: flips,
    rotations, elastic deformation, intensity, gamma, noise; False: none; or a
    dict / `napari_unet.augmentation.Augmentation` switching each, e.g.
    ``{"blur": True}``), ``seed`` (reproducible sampling, augmentation and
    dropout), ``data_parallel`` (None: split each batch across all local GPUs
    when there are several; True: across all local devices, at least two;
    False: one device; see `napari_unet.keras_backend.DataParallel`),
    ``target`` (``"auto"``: ``"boundary"`` for instance labels, see
    `napari_unet.training_data.choose_target`), ``boundary_width`` (px, 1-3),
    ``border_weight`` and ``border_sigma`` (the U-Net paper's extra loss weight
    ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` where objects come close, see
    `napari_unet.boundaries.border_weights`; ``border_weight`` is w0, 0 = off, the
    paper's 10; ``border_sigma`` in px, the paper's 5; dense instance labels only),
    ``patience`` (epochs without a better validation IoU before training ends;
    the learning rate halves after half as many; None: never), ``time_budget``
    (seconds, then training ends as if stopped), ``calibrate`` (choose the
    label thresholds on the validation blocks, `napari_unet.calibration`) and
    ``freeze_encoder`` (fine-tuning: the encoder and bottleneck keep their weights,
    only the decoder learns).
    """

    patch_size: int = 128
    batch_size: int = 8
    epochs: int | None = None
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-3
    validation_fraction: float = 0.15
    loss: str = "bce"
    label_mode: str = "dense"
    augment: Any = True
    seed: int | None = None
    data_parallel: bool | None = None
    target: str = "auto"
    boundary_width: int = 2
    border_weight: float = 0.0
    border_sigma: float = 5.0
    patience: int | None = 8
    time_budget: float | None = None
    calibrate: bool = True
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        for name in ("patch_size", "batch_size"):
            check_whole(name, getattr(self, name), 1)
        if self.epochs is not None and (not is_whole(self.epochs) or self.epochs < 1):
            raise ValueError(f"epochs must be a whole number >= 1, or None to size training "
                             f"from the annotated pixels; got {self.epochs!r}.")
        if self.steps_per_epoch is not None and (not is_whole(self.steps_per_epoch)
                                                 or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be a whole number >= 1, or None for about "
                             f"two passes over the annotations; got {self.steps_per_epoch!r}.")
        if not is_real(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be a finite number > 0 (e.g. 1e-3); got "
                             f"{self.learning_rate!r}.")
        if not is_real(self.validation_fraction) or not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1); got {self.validation_fraction!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {self.loss!r}.")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}; got {self.label_mode!r}.")
        from .augmentation import Augmentation

        object.__setattr__(self, "augment", Augmentation.from_setting(self.augment))
        if self.seed is not None and not is_whole(self.seed):
            raise ValueError(f"seed must be a whole number or None; got {self.seed!r}.")
        if self.data_parallel is not None:
            check_switch("data_parallel", self.data_parallel)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {self.target!r}.")
        check_whole("boundary_width", self.boundary_width, 1, 3)
        if not is_real(self.border_weight) or not 0 <= self.border_weight <= 100:
            raise ValueError(f"border_weight must be a number from 0 (off) to 100 (the U-Net "
                             f"paper uses 10); got {self.border_weight!r}.")
        if not is_real(self.border_sigma) or not 0 < self.border_sigma <= 100:
            raise ValueError(f"border_sigma must be a number of pixels in (0, 100] (the U-Net "
                             f"paper uses 5); got {self.border_sigma!r}.")
        if self.patience is not None:
            check_whole("patience", self.patience, 1, unit=" of epochs")
        if self.time_budget is not None and (not is_real(self.time_budget)
                                             or self.time_budget <= 0):
            raise ValueError(f"time_budget must be a number of seconds > 0, or None; got "
                             f"{self.time_budget!r}.")
        check_switch("calibrate", self.calibrate)
        check_switch("freeze_encoder", self.freeze_encoder)

    def check_for(self, config: UNetConfig, target: str) -> None:
        """Raise ``ValueError`` unless the patches fit the network's pooling grid and border
        weights, if on, have instance labels to come from (``target``: the network's)."""
        m = config.size_multiple
        if self.patch_size % m:
            raise ValueError(f"patch_size must be a positive multiple of 2**depth = {m}; got "
                             f"{self.patch_size!r}.")
        if self.border_weight and (self.label_mode != "dense" or target == "classes"):
            raise ValueError("border_weight needs dense instance labels (one id per object) for "
                             f"a boundary or foreground network; got label_mode "
                             f"{self.label_mode!r} and target {target!r}. Set it to 0 "
                             "(--border-weight on the command line).")

    def schedule(self, targets: Sequence[np.ndarray]) -> tuple[int, int]:
        """``(epochs, batches per epoch)`` for the training ``targets`` (-1 = not annotated).

        Batches per epoch: as set, or about two passes over the annotated pixels (at
        least 10). Epochs: as set; with a ``time_budget``, `MAX_AUTO_EPOCHS` (the budget
        or early stopping ends training); else about 20 passes over the annotated
        pixels, but at least `MIN_AUTO_BATCHES` and at most `MAX_AUTO_BATCHES` batches
        in all, in 5 to 100 epochs (5 epochs of more than 400 batches exceed the cap): a few scribbles still get a few hundred batches, and
        a large dataset is not trained for hours by default.
        """
        annotated = sum(int(np.count_nonzero(t >= 0)) for t in targets)
        passes = annotated / (self.patch_size**2 * self.batch_size)  # batches per pass
        steps = (int(self.steps_per_epoch) if self.steps_per_epoch is not None
                 else max(10, math.ceil(2 * passes)))
        if self.epochs is not None:
            return int(self.epochs), steps
        if self.time_budget is not None:
            return MAX_AUTO_EPOCHS, steps
        epochs = math.ceil(max(20 * passes, MIN_AUTO_BATCHES) / steps)
        if epochs * steps > MAX_AUTO_BATCHES:
            epochs = MAX_AUTO_BATCHES // steps
        return int(np.clip(epochs, 5, 100)), steps


def iter_train(images: Any, labels: Any, model: UNetConfig | UNetModel | None = None, *,
               axes: Sequence[str | None] | str | None = None,
               should_stop: Callable[[], bool] | None = None,
               names: Sequence[str] | None = None, preview: Any = None,
               class_names: Sequence[str] | None = None,
               **settings: Any) -> Generator[TrainProgress, None, TrainResult]:
    """Train a U-Net, yielding `TrainProgress`; the generator returns a `TrainResult`.

    Parameters
    ----------
    images, labels : one array or a list of arrays. Images are YX (or stacks,
        see `napari_unet.training_data.prepare_training_data`); labels are
        integer arrays of the same spatial shape. ``label_mode="dense"``: 0 =
        background, > 0 = objects (or class ids). ``label_mode="sparse"``: 0 =
        unlabelled, 1 = background, 2.. = classes.
    model : a `UNetConfig` (a new network is built), a `UNetModel` (training
        continues from its weights, in place) or None (default config).
    axes : one axes string for all images, or one per image (None: guessed).
    should_stop : called between batches; when it returns True training ends
        after the current batch, validates, and keeps the best weights.
    names : one name per image (e.g. its file name) for error messages.
    class_names : one name per class, background first (e.g. ``["background",
        "nucleus"]``), stored in the model; as many as it has outputs (2 for one).
    preview : a `napari_unet.training_preview.Preview`: every few seconds the region
        it names is labelled with the current weights and yielded as a `TrainPreview`.
    settings : the fields of `TrainSettings` (there documented).

    Training a `UNetModel` again continues it: its optimizer (and so Adam's moments)
    is kept when it has one, the new epochs extend ``history``, and ``info["rounds"]``
    lists every round with its annotation record (painted pixels per class and image).

    If the loss stops being finite, training stops: with the weights of the
    best finite epoch and a ``RuntimeWarning`` (``info["diverged"]`` says what
    happened), or with a ``ValueError`` when no epoch ended finite.
    """
    options = TrainSettings(**settings)
    parallel = _parallel_plan(options)
    images, labels, axes_list = _as_lists(images, labels, axes, names)
    unet = _name_classes(_resolve_train_model(model, parallel, options, labels), class_names)
    options.check_for(unet.config, unet.target)
    xs, ys, truths, sources = prepare_training_data(images, labels, unet.config,
                                                    options.label_mode, unet.normalization,
                                                    axes_list, names, unet.target,
                                                    options.boundary_width)
    train_targets, validation, sampler = _split(unet, options, xs, ys, truths, sources, parallel)
    epochs, steps = options.schedule(train_targets)
    weights = class_weights(train_targets, 3) if unet.target == "boundary" else None
    side_job = _preview_job(unet, preview, images, axes_list)
    started = time.perf_counter()
    stop = _with_deadline(should_stop, options.time_budget, started)
    outcome = yield from _fit(unet, options, sampler, validation, (epochs, steps), stop,
                              parallel, weights, side_job)
    _report_divergence(outcome, options.learning_rate)
    monitor = "val_iou" if validation is not None else "iou"
    _record_provenance(unet, outcome, options, (epochs, steps), time.perf_counter() - started,
                       monitor, _annotations(unet, options, labels, names))
    unet.info["class_weights"] = weights
    yield TrainProgress(len(outcome.history["loss"]), epochs, steps, steps, "calibrate")
    _calibrate(unet, options, xs, ys, truths, train_targets, sources)
    return TrainResult(unet, outcome.history)


def _annotations(unet: UNetModel, options: TrainSettings, labels: list, names: Any) -> list:
    """The annotation record of this round (`napari_unet.scribbles.annotation_record`)."""
    named = options.label_mode == "sparse" or unet.target == "classes"
    return annotation_record(labels, options.label_mode, names,
                             unet.class_names if named else None)


def _name_classes(unet: UNetModel, class_names: Sequence[str] | None) -> UNetModel:
    """``unet`` with the user's class names (``ValueError`` if their number differs)."""
    if class_names is None:
        return unet
    names = [str(n).strip() for n in class_names]
    wanted = len(unet.class_names)
    if len(names) != wanted or not all(names) or len(set(names)) != len(names):
        raise ValueError(f"class_names must be {wanted} different, non-empty names (background "
                         f"first) for this {unet.target} network; got {list(class_names)!r}.")
    if unet.target == "boundary":
        raise ValueError("a boundary network's classes are background / interior / boundary; "
                         "class_names are for foreground and classes networks.")
    unet.class_names = names
    return unet


def _preview_job(unet: UNetModel, preview: Any, images: list, axes_list: list) -> Any:
    """The `napari_unet.training_preview.PreviewJob` for ``preview`` (None: none)."""
    if preview is None:
        return None
    from .training_preview import PreviewJob

    return PreviewJob(unet, preview, images, [
        arrays.resolve_axes(a, np.shape(i), unet.config.in_channels)
        for i, a in zip(images, axes_list)])


def _split(unet: UNetModel, options: TrainSettings, xs: list, ys: list, truths: list,
           sources: list, parallel: Any) -> tuple[list, Any, PatchSampler]:
    """Hold out validation blocks (larger for boundary targets, so whole objects fall
    inside; the same blocks in every Z plane of a stack). Returns the training targets,
    the validation patches and the patch sampler (which, for boundary targets, shows the
    seams of touching objects more often, and with ``border_weight`` gives its batches a
    weight channel; validation stays unweighted)."""
    from scipy import ndimage as ndi

    from .boundaries import border_weights, touching_seams

    rng = _seeded_rng(options.seed)
    block = max(unet.config.size_multiple,
                options.patch_size // (2 if unet.target == "boundary" else 4))
    train_targets, validation = split_validation(xs, ys, options.validation_fraction, block,
                                                 options.patch_size, unet.config.n_classes,
                                                 options.label_mode, rng,
                                                 [(s.image, s.stack) if s.z >= 0 else i
                                                  for i, s in enumerate(sources)])
    focus = weights = None
    if unet.target == "boundary":
        focus = [touching_seams(t, options.boundary_width) & (kept >= 0)
                 for t, kept in zip(truths, train_targets)]
    if options.border_weight:  # 0/1 masks: each connected object is one (the paper's case)
        weights = [border_weights(t if t.max() > 1 else ndi.label(t > 0)[0],
                                  options.border_weight, options.border_sigma) for t in truths]
    sampler = PatchSampler(xs, train_targets, options.patch_size, options.batch_size,
                           options.augment, rng, focus, weights)
    return train_targets, _split_evenly(validation, parallel), sampler


def _with_deadline(should_stop: Callable[[], bool] | None, budget: float | None,
                   started: float) -> Callable[[], bool] | None:
    """``should_stop``, also answering True once ``budget`` seconds have passed."""
    if budget is None:
        return should_stop
    return lambda: (time.perf_counter() - started > budget
                    or (should_stop is not None and bool(should_stop())))


def _calibrate(unet: UNetModel, options: TrainSettings, xs: list, ys: list, truths: list,
               train_targets: list, sources: list) -> None:
    """Choose the model's label settings on the held-out region (`napari_unet.calibration`),
    store them on ``unet`` (threshold, seed_threshold, min_size, split_distance,
    info["calibration"]; for a boundary model trained on 3D instance labels also
    ``linked_decoding`` and info["calibration_linked"]) and warn when the model marks
    (almost) everything one way."""
    from .calibration import calibrate, collapse_warning, plane_probabilities

    held = [(y >= 0) & (t < 0) for y, t in zip(ys, train_targets)]  # the validation pixels
    planes = _calibration_planes(ys, held)
    probs = plane_probabilities(unet, [xs[i] for i in planes])
    annotated = [ys[i] >= 0 for i in planes]
    if unet.target == "foreground":
        foreground = [p > unet.threshold for p in probs]
    else:
        foreground = [np.argmax(p, axis=-1) > 0 for p in probs]
    message = collapse_warning(foreground, [ys[i] > 0 for i in planes], annotated)
    unet.info["collapse_warning"] = message
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=4)
    if options.label_mode != "dense" or not options.calibrate:
        return
    kept = [truths[i] if unet.target == "boundary" else (truths[i] > 0) for i in planes]
    result = calibrate(unet, probs, kept, [held[i] for i in planes])
    if result is not None:
        unet.threshold, unet.seed_threshold, unet.min_size, unet.split_distance = (
            result.threshold, result.seed_threshold, result.min_size, result.split_distance)
        unet.info["calibration"] = result.to_dict()
    unet.linked_decoding = {}  # values from an earlier round would describe other weights
    unet.info.pop("calibration_linked", None)
    runs = (_within_limit(linked_stacks(sources, truths), ys, LINKED_VOXELS)
            if unet.target == "boundary" else [])
    if runs:
        _calibrate_linked(unet, runs, xs, held, truths, dict(zip(planes, probs)))


def _calibrate_linked(unet: UNetModel, runs: list[list[int]], xs: list, held: list, truths: list,
                      predicted: dict[int, np.ndarray]) -> None:
    """Calibrate decoding with objects linked in 3D on the ``runs`` of Z planes that hold 3D
    instance labels (`napari_unet.training_data.linked_stacks`): each run's probabilities
    (reusing the ``predicted`` planes), truths and ``held``-out pixels become volumes."""
    from .calibration import calibrate, plane_probabilities

    missing = [i for run in runs for i in run if i not in predicted]
    predicted = {**predicted,
                 **dict(zip(missing, plane_probabilities(unet, [xs[i] for i in missing])))}
    volumes = [np.stack([predicted[i] for i in run]) for run in runs]
    result = calibrate(unet, volumes, [np.stack([truths[i] for i in run]) for run in runs],
                       [np.stack([held[i] for i in run]) for run in runs])
    unet.linked_decoding = {"threshold": result.threshold, "seed_threshold": result.seed_threshold,
                            "min_size": result.min_size, "split_distance": result.split_distance}
    unet.info["calibration_linked"] = result.to_dict()


def _within_limit(runs: list[list[int]], ys: list, limit: int = 16_000_000) -> list[list[int]]:
    """The leading ``runs`` of planes that fit in ``limit`` pixels in all; the last one kept
    may be cut to fit (never below 3 planes, so the first run is always kept)."""
    kept, total = [], 0
    for run in runs:
        fit = run[:max(3, (limit - total) // ys[run[0]].size)]
        size = sum(ys[i].size for i in fit)
        if kept and total + size > limit:
            break
        kept.append(fit)
        total += size
    return kept


def _calibration_planes(ys: list, held: list, limit: int = 16_000_000) -> list[int]:
    """Indices of the planes calibration predicts: those with ``held``-out pixels first,
    then the others, up to ``limit`` pixels in all (at least one plane)."""
    first = [i for i, h in enumerate(held) if h.any()]
    order = first + sorted(set(range(len(ys))) - set(first))
    chosen, total = [], 0
    for i in order:
        if chosen and total + ys[i].size > limit:
            break
        chosen.append(i)
        total += ys[i].size
    return chosen


def _fit(unet: UNetModel, options: TrainSettings, sampler: PatchSampler, validation: Any,
         schedule: tuple[int, int], should_stop: Any, parallel: Any,
         weights: list[float] | None, side_job: Any = None):
    """Compile (in the data-parallel scope, if any; with the encoder frozen when asked)
    and run `fit_events` on patches made ahead by `_patch_workers` threads; returns its
    `FitOutcome`; ``schedule`` is (epochs, batches per epoch). The encoder is trainable
    again afterwards."""
    frozen = _freeze_encoder(unet.keras_model, options.freeze_encoder)
    with parallel.scope() if parallel else contextlib.nullcontext():
        _compile(unet, options, weights)
    batches = sampler.stream(workers=_patch_workers())
    try:
        return (yield from fit_events(unet.keras_model, batches, validation, *schedule,
                                      options.batch_size, should_stop,
                                      parallel.scope if parallel else None, options.patience,
                                      side_job))
    finally:
        batches.close()
        for layer in frozen:
            layer.trainable = True


def _freeze_encoder(km: Any, freeze: bool) -> list:
    """Make the encoder and bottleneck layers untrainable when ``freeze``; returns them."""
    if not freeze:
        return []
    layers = [layer for layer in km.layers if layer.name.startswith(("enc", "bottleneck"))
              and layer.trainable and layer.weights]
    for layer in layers:
        layer.trainable = False
    return layers


def _split_evenly(validation: Any, parallel: Any) -> Any:
    """The validation patches, a multiple of the data-parallel devices in number (every
    batch must split evenly); None when fewer than that are left."""
    if parallel is None or validation is None:
        return validation
    keep = len(validation[0]) // parallel.devices * parallel.devices
    return (validation[0][:keep], validation[1][:keep]) if keep else None


def _patch_workers() -> int:
    """Threads that cut training patches ahead of the device: a quarter of the cores, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def _parallel_plan(options: TrainSettings) -> Any:
    """The data-parallel plan (None: one device); the batch must split evenly over it."""
    from .keras_backend import data_parallel

    plan = data_parallel(options.data_parallel)
    if plan is not None and options.batch_size % plan.devices:
        raise ValueError(f"batch_size must be a multiple of the {plan.devices} devices that "
                         f"share each batch; got {options.batch_size}. Use "
                         f"{plan.devices * max(1, round(options.batch_size / plan.devices))}, "
                         "or data_parallel=False.")
    return plan


def _resolve_train_model(model: Any, parallel: Any, options: TrainSettings,
                         labels: list) -> UNetModel:
    """The `UNetModel` to train: a given one (its target must agree with ``options.target``)
    or a new one whose target `choose_target` picks from the labels (a ``"boundary"``
    network has 3 outputs). With a data-parallel plan the network is (re)built in the
    plan's scope, so its weights are mirrored on every device."""
    from dataclasses import replace

    scope = parallel.scope() if parallel is not None else contextlib.nullcontext()
    if isinstance(model, UNetModel):
        if options.target not in ("auto", model.target):
            raise ValueError(f"This model was trained for target {model.target!r}; it cannot "
                             f"continue as {options.target!r}. Build a new model instead.")
        if parallel is not None:
            weights = model.keras_model.get_weights()
            with scope:
                model.keras_model = build_unet(model.config)
            model.keras_model.set_weights(weights)
        return model
    if model is None or isinstance(model, UNetConfig):
        config = model or UNetConfig()
        target = choose_target(options.target, config.n_classes, options.label_mode, labels)
        if target == "boundary":
            config = replace(config, n_classes=3)
        with scope:
            return UNetModel.new(config, target=target)
    raise ValueError(
        f"model must be a UNetConfig (a new network), a UNetModel (continue training) "
        f"or None (the default network); got {type(model).__name__}."
    )


def _as_lists(images: Any, labels: Any, axes: Any, names: Any) -> tuple[list, list, list]:
    """Images, labels and one axes entry per image as lists; checks their lengths."""
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    labels = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    if axes is None or isinstance(axes, str):
        axes_list = [axes] * len(images)
    elif isinstance(axes, (list, tuple)) and len(axes) == len(images):
        axes_list = list(axes)
    else:
        raise ValueError(f"axes must be one string such as 'YX' for all images, or a list with "
                         f"one per image ({len(images)}); got {axes!r}.")
    if names is not None and len(names) != len(images):
        raise ValueError(f"names must give one name per image ({len(images)}); got {len(names)}.")
    return images, labels, axes_list


def _seeded_rng(seed: int | None) -> np.random.Generator:
    """The patch sampler's random generator; with a seed, Keras' dropout is seeded too."""
    if seed is not None:
        from .keras_backend import load_keras

        load_keras().utils.set_random_seed(int(seed))
    return np.random.default_rng(seed)


def _compile(unet: UNetModel, options: TrainSettings, weights: list[float] | None) -> None:
    """Compile the network with Adam (the one it trained with, when it did, so a second
    round continues its moments), the masked loss (class ``weights``, if any) and the
    masked IoU metric."""
    from .keras_backend import load_keras, make_adam, resolve_precision
    from .losses import MaskedIoU, make_loss

    optimizer = getattr(unet.keras_model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        optimizer.learning_rate = options.learning_rate  # continue: Adam's moments are kept
    else:
        optimizer = make_adam(options.learning_rate)
        if resolve_precision(unet.config.precision) == "mixed_float16":  # float16 grads underflow
            optimizer = load_keras().optimizers.LossScaleOptimizer(optimizer)
    unet.keras_model.compile(optimizer=optimizer,
                             loss=make_loss(options.loss, weights),
                             metrics=[MaskedIoU(threshold=unet.threshold)])


def _report_divergence(outcome: FitOutcome, learning_rate: float) -> None:
    """Warn when training stopped on a non-finite loss; raise when nothing usable is left."""
    if not outcome.diverged:
        return
    advice = (f"lower the learning rate (it was {learning_rate:g}; try {learning_rate / 10:g}), "
              "or check the images for extreme values")
    if outcome.best_epoch == 0:
        raise ValueError(f"Training diverged: {outcome.diverged}, before any epoch gave a "
                         f"finite result, so there is no usable model; {advice}.")
    warnings.warn(f"Training stopped because {outcome.diverged}; kept the weights of epoch "
                  f"{outcome.best_epoch}, the best finite one. To train further, {advice}.",
                  RuntimeWarning, stacklevel=4)


def _record_provenance(unet: UNetModel, outcome: FitOutcome, options: TrainSettings,
                       schedule: tuple[int, int], seconds: float, monitor: str,
                       record: list[dict]) -> None:
    """Store the history (extending an earlier round's), the annotation ``record`` and
    how, when and with what the model was trained on ``unet``; ``best_epoch`` counts
    over all rounds."""
    from .keras_backend import load_keras, resolve_precision
    from .version import __version__

    keras = load_keras()
    before = len(next(iter(unet.history.values()), [])) if unet.history else 0
    unet.history = _extend_history(unet.history, outcome.history, before)
    rounds = list(unet.info.get("rounds", [])) + [{
        "first_epoch": before + 1, "epochs": len(outcome.history["loss"]),
        "learning_rate": options.learning_rate, "label_mode": options.label_mode,
        "freeze_encoder": options.freeze_encoder, "annotations": record}]
    settings = {k: v for k, v in asdict(options).items() if k not in ("seed", "steps_per_epoch")}
    unet.info = {
        **unet.info,
        "napari_unet_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "precision": resolve_precision(unet.config.precision),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_seconds": round(seconds, 2),
        "epochs_run": before + len(outcome.history["loss"]),
        "best_epoch": before + outcome.best_epoch if outcome.best_epoch else 0,
        "annotations": record,
        "rounds": rounds,
        "monitor": monitor,
        "stopped_early": outcome.stopped,
        "early_stopping": outcome.early_stopped,
        "diverged": outcome.diverged,
        **settings,
        "epochs": schedule[0],
        "epochs_auto": options.epochs is None,
        "steps_per_epoch": schedule[1],
    }


def _extend_history(old: dict, new: dict, before: int) -> dict[str, list[float]]:
    """``old`` epochs (``before`` of them) followed by ``new`` ones, key by key; a metric
    missing from one round (e.g. no validation) is NaN there."""
    after = len(new["loss"])
    keys = list(old) + [k for k in new if k not in old]
    return {k: list(old.get(k, [math.nan] * before)) + list(new.get(k, [math.nan] * after))
            for k in keys}


def train(images: Any, labels: Any, model: UNetConfig | UNetModel | None = None, *,
          callback: Callable[[TrainProgress], None] | None = None, verbose: bool = True,
          **kwargs: Any) -> TrainResult:
    """Train like `iter_train` and return its `TrainResult` ``(model, history)``.

    ``callback`` (optional) receives every `TrainProgress` event. ``verbose``
    prints one line per epoch to standard error (and a running batch line on a
    terminal); pass ``verbose=False`` for silence. The other keyword arguments
    are those of `iter_train`.
    """
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
        if event.phase == "calibrate":
            stream.write(f"{chr(13) if tty else ''}choosing the label settings (calibration)\n")
            stream.flush()
            return
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
