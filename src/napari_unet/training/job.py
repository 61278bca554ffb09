"""Training: a generator that yields progress and returns the trained model.

`iter_train` is the training job, a short sequence of named steps, each in its own
module: the network to train (`napari_unet.training.network`), the settings
(`napari_unet.training.settings`), the data (`napari_unet.training.data`), held-out
validation and patches (`napari_unet.training.sampling`), Keras' ``fit`` with the best
weights kept (`napari_unet.training.fit_loop`), the provenance
(`napari_unet.training.provenance`) and the label settings
(`napari_unet.training.calibration`). It yields a `TrainProgress` after every call of the
compiled step (1-4 batches) and epoch, checks ``should_stop`` between those calls, and
returns a `TrainResult`. `train`
drains it; the engine process behind the napari widgets drains the same generator
(`iter_train_request`).
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any, Callable, Generator, NamedTuple, Sequence

from ..backend.runtime import release_free_memory
from ..common.checks import check_switch
from ..common.progress import TrainProgress, drain
from ..model.config import UNetConfig
from ..model.unet import UNetModel
from .calibration import calibrate_trained
from .console import console_progress
from .data import class_weights, prepare_training_data
from .fit_loop import FitOutcome, fit
from .network import network_to_train, parallel_plan
from .provenance import record_provenance
from .request import TrainRequest
from .sampling import held_out_and_sampler
from .settings import TrainSettings
from .volumes import (calibrate_volumes, prepare_volume_data, settings_for_volumes,
                      volume_held_out_and_sampler)

__all__ = ["TrainResult", "iter_train", "iter_train_request", "train"]


class TrainResult(NamedTuple):
    model: UNetModel
    history: dict[str, list[float]]


def iter_train(images: Any, labels: Any, model: UNetConfig | UNetModel | None = None, *,
               axes: Sequence[str | None] | str | None = None,
               should_stop: Callable[[], bool] | None = None,
               names: Sequence[str] | None = None, preview: Any = None,
               class_names: Sequence[str] | None = None, settings: TrainSettings | None = None,
               spacing: Any = None, **options: Any) -> Generator[TrainProgress, None, TrainResult]:
    """Train a U-Net, yielding `TrainProgress`; the generator returns a `TrainResult`.

    Parameters
    ----------
    images, labels : one array or a list of arrays. Images are YX (or stacks,
        see `napari_unet.training.data.prepare_training_data`; a 3D network takes
        stacks with a Z axis, `napari_unet.training.volumes`); labels are
        integer arrays of the same spatial shape. ``label_mode="dense"``: 0 =
        background, > 0 = objects (or class ids). ``label_mode="sparse"``: 0 =
        unlabelled, 1 = background, 2.. = classes.
    model : a `UNetConfig` (a new network is built), a `UNetModel` (training
        continues from its weights, in place) or None (the default config).
    axes : one axes string for all images, or one per image (None: guessed).
    should_stop : called between calls of the compiled step (1-4 batches); True ends
        training after the call in progress (validated; the best weights are kept).
    names : one name per image (e.g. its file name) for error messages.
    class_names : one name per class, background first (e.g. ``["background",
        "nucleus"]``), stored in the model; as many as it has outputs (2 for one).
    preview : a `napari_unet.training.preview.Preview` (2D networks): every few seconds
        its region is labelled with the current weights, yielded as a `TrainPreview`.
    spacing : pixel sizes along Z, Y, X (``{"Z": 2.0, "Y": 0.5, "X": 0.5}``), one for all
        or a list with one per image (None: 1): calibration measures true distances, as
        `napari_unet.labels.options.LabelOptions.spacing` will; its record keeps them.
    settings, options : a `TrainSettings`, or its fields as keywords (there documented).

    Training a `UNetModel` again continues it: its optimizer (Adam's moments) is kept, new
    epochs extend ``history``; ``info["rounds"]`` records each round's painted pixels.

    If the loss stops being finite, training stops: with the weights of the best finite
    epoch and a ``RuntimeWarning`` (``info["diverged"]`` says what happened), or with a
    ``ValueError`` when no epoch ended finite.
    """
    settings = _settings(settings, options)
    parallel = parallel_plan(settings)
    images, labels, axes_list = _as_lists(images, labels, axes, names)
    spacings = _spacings(spacing, len(images))
    unet = network_to_train(model, parallel, settings, labels, class_names)
    settings.check_for(unet.config, unet.target)
    data, held_out, settings = _data_and_held_out(
        unet, settings, (images, labels, axes_list, names, spacings), parallel)
    schedule = settings.schedule(held_out.targets, held_out.sampler.shape)
    weights = class_weights(held_out.targets, 3) if unet.target == "boundary" else None
    started = time.perf_counter()
    outcome = yield from fit(unet, settings, held_out, schedule, should_stop, parallel, weights,
                             _preview_job(unet, preview, images, axes_list))
    _report_divergence(outcome, settings.learning_rate)
    record_provenance(unet, outcome, settings, schedule, time.perf_counter() - started,
                      labels, names, weights)
    yield TrainProgress(len(outcome.history["loss"]), *schedule, schedule[1], "calibrate")
    calibrate = calibrate_volumes if unet.config.ndim == 3 else calibrate_trained
    calibrate(unet, settings, data, held_out.targets, spacings)
    del data, held_out
    release_free_memory()
    return TrainResult(unet, outcome.history)


def iter_train_request(request: TrainRequest, model: UNetModel | None = None,
                       should_stop: Callable[[], bool] | None = None
                       ) -> Generator[TrainProgress, None, TrainResult]:
    """`iter_train` for a `TrainRequest` (its folders read here): a trained ``model``
    further; else a new network, from the request's ``new_config`` or, for a built but
    untrained ``model`` (the Build widget's), from its config, so that the labels choose
    what it learns (`napari_unet.training.data.choose_target`)."""
    if not isinstance(request, TrainRequest):
        raise ValueError(f"request must be a TrainRequest; got {type(request).__name__}.")
    request = request.resolved()
    if model is None or not model.summary.trained:
        model = request.new_config if model is None else model.config
    return (yield from iter_train(
        request.images, request.labels, model,
        axes=request.axes, should_stop=should_stop, names=request.names,
        preview=request.preview, class_names=request.class_names, settings=request.settings,
        spacing=request.spacing))


def _settings(settings: TrainSettings | None, options: dict[str, Any]) -> TrainSettings:
    """``settings``, or the `TrainSettings` of the keyword ``options`` (not both)."""
    if settings is None:
        return TrainSettings(**options)
    if not isinstance(settings, TrainSettings):
        raise ValueError(f"settings must be a TrainSettings; got {type(settings).__name__}.")
    if options:
        raise ValueError(f"give either settings=TrainSettings(...) or its fields as keywords, "
                         f"not both (also got {sorted(options)}).")
    return settings


def _preview_job(unet: UNetModel, preview: Any, images: list, axes_list: list) -> Any:
    """The `napari_unet.training.preview.PreviewJob` for ``preview`` (None: none, and for a
    3D network, which trains without one)."""
    if preview is None or unet.config.ndim == 3:
        return None
    from .preview import PreviewJob

    return PreviewJob(unet, preview, images, axes_list)


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


def _data_and_held_out(unet: UNetModel, settings: TrainSettings, given: tuple,
                       parallel: Any) -> tuple[Any, Any, Any]:
    """The `TrainingData` (planes, or volumes for a 3D network), its `HeldOut`
    validation and patch sampler, and the settings they were cut with (a 3D network's
    default patches made to fit memory, `settings_for_volumes`), from what was ``given``:
    images, labels, their axes, names and spacings (lists, one per image)."""
    images, labels, axes_list, names, spacings = given
    if unet.config.ndim == 3:
        data = prepare_volume_data(images, labels, unet.config, settings.label_mode,
                                   unet.normalization, axes_list, names, unet.target,
                                   settings.boundary_width, spacings)
        settings = settings_for_volumes(settings, unet.config,
                                        max(t.shape[0] for t in data.targets),
                                        parallel.devices if parallel is not None else 1)
        held_out = volume_held_out_and_sampler(unet, settings, data, parallel, spacings)
        return data, held_out, settings
    data = prepare_training_data(images, labels, unet.config, settings.label_mode,
                                 unet.normalization, axes_list, names, unet.target,
                                 settings.boundary_width)
    return data, held_out_and_sampler(unet, settings, data, parallel), settings


def _spacings(spacing: Any, n_images: int) -> list[Any]:
    """One checked spacing (`napari_unet.labels.options.check_spacing`) per image from one
    ``spacing`` for all or a list of them."""
    from ..labels.options import check_spacing

    if isinstance(spacing, list):
        if len(spacing) != n_images:
            raise ValueError(f"spacing must be one mapping such as {{'Z': 2.0, 'Y': 0.5, "
                             f"'X': 0.5}} for all images, or a list with one per image "
                             f"({n_images}); got {len(spacing)}.")
        return [check_spacing(s) or None for s in spacing]
    return [check_spacing(spacing) or None] * n_images


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
