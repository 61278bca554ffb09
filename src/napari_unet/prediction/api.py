"""Prediction for users: probabilities and labels of any image, from a model or a file.

`iter_predict` yields `PredictProgress` and returns probabilities; `predict`
drains it (or, for a dask array, returns a lazy result: `napari_unet.prediction.lazy`);
`probabilities_and_labels` gives both from one network pass, and `segment`
the labels alone. The work itself is in `napari_unet.prediction.tiled`.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, NamedTuple

import numpy as np

from ..common import arrays
from ..common.progress import PredictProgress, drain
from ..labels.decode import label_maps, labels_from_maps
from ..labels.options import LabelOptions
from ..model.files import resolve_model
from ..model.unet import UNetModel
from .tiled import iter_probabilities

__all__ = ["iter_predict", "predict", "iter_segment", "probabilities_and_labels", "segment",
           "Run", "plan_run", "iter_run"]


def iter_predict(
    model: Any,
    image: Any,
    *,
    axes: str | None = None,
    tile_size: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    probabilities_as: str = "float32",
) -> Generator[PredictProgress, None, np.ndarray]:
    """Predict probabilities, yielding `PredictProgress`; returns the probability array.

    Parameters
    ----------
    model : a `UNetModel` or a path to a ``.keras`` file saved by `save_model`.
    image : array with axes YX, ZYX, TYX or TZYX, optionally with a channel
        axis (``axes`` names it, e.g. ``"YXC"`` for RGB or ``"CZYX"``); any size.
    axes : axes string; guessed from the shape and the model's channels if None.
    tile_size : side in pixels of the square windows fed to the network
        (including the halo); chosen from ``memory_budget`` if None.
    batch_size : windows per network call; chosen from the budget if None (on JAX's
        and PyTorch's CPU also no more than their fastest call size, see
        `napari_unet.backend.devices.cpu_call_bytes`).
    memory_budget : bytes the network's activations may use (default: half of
        the free memory of the GPU the backend uses; on a CPU a quarter of the
        available memory, at most 1 GiB).
    stats : per-channel normalisation (lo, hi) to use instead of this image's
        own percentiles (the lazy path passes those of the whole array).
    probabilities_as : ``"float32"`` (default); ``"bfloat16"``: float32 values rounded
        to bfloat16 on the device, within 2**-8 of the float32 ones (relative), half the
        bytes copied back from a GPU; ``"uint8"``: a uint8 array, probability x 255
        rounded (within 0.5 / 255), a quarter of the bytes, also in host memory.

    Returns float32 probabilities with the image's spatial shape and axis order
    (channel axis dropped) for a binary model, or with a trailing class axis of
    length ``n_classes`` for a multi-class model. The input is not modified.
    Every argument is checked before any work (``ValueError`` naming it). If
    the backend runs out of memory, batches and then tiles are halved and the
    prediction restarts, with a `PredictProgress` message saying so.
    """
    return (yield from iter_probabilities(resolve_model(model), image, axes=axes,
                                          tile_size=tile_size, batch_size=batch_size,
                                          memory_budget=memory_budget, stats=stats,
                                          probabilities_as=probabilities_as))


def predict(model: Any, image: Any, *, callback: Callable[[PredictProgress], None] | None = None,
            **kwargs: Any) -> np.ndarray:
    """Foreground (or class) probabilities of ``image``; see `iter_predict` for arguments.

    A dask array input gives a lazy dask array output (see `napari_unet.prediction.lazy`).
    """
    if _is_dask(image):
        from .lazy import predict_dask

        return predict_dask(model, image, **kwargs)
    return drain(iter_predict(model, image, **kwargs), callback)


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask.")


class Run(NamedTuple):
    """One prediction, resolved once (`plan_run`): the loaded `UNetModel`, the
    `LabelOptions` with the model's values filled in, and the image's axes."""

    unet: UNetModel
    options: LabelOptions
    axes: str


def plan_run(model: Any, shape: tuple[int, ...], options: Any = None,
             axes: str | None = None) -> Run:
    """The `Run` of ``model`` (a `UNetModel` or a model file, loaded here) on an image of
    ``shape``: ``options`` (a `LabelOptions`; default: instance labels with the model's
    values) filled in for it, ``axes`` checked (None: guessed)."""
    unet = resolve_model(model)
    options = options if options is not None else LabelOptions()
    if not isinstance(options, LabelOptions):
        raise ValueError(f"options must be a LabelOptions or None; got {type(options).__name__}.")
    axes = arrays.resolve_axes(axes, tuple(shape), unet.config.in_channels)
    return Run(unet, options.for_unet(unet, axes.replace("C", "")), axes)


def iter_run(run: Run, image: Any, probabilities: bool = True, **kwargs: Any
             ) -> Generator[PredictProgress, None, tuple[np.ndarray | None, np.ndarray]]:
    """Probabilities and labels of ``image`` for a planned `Run`, from one network pass;
    yields `PredictProgress`. ``kwargs`` are `iter_predict`'s run options. Without
    ``probabilities`` (returned as None) the device sends back only the map labels are
    decoded from (`napari_unet.prediction.reduced`): the same labels, fewer bytes. The
    labels always come from float32 probabilities: with ``probabilities_as`` (see
    `iter_predict`) the probabilities are converted on the host after decoding."""
    from ..backend.runtime import release_free_memory
    from .reduced import Reduced, probabilities_as, probability_reduction
    from .tiled import iter_tiled

    spatial = run.axes.replace("C", "")
    kind = kwargs.pop("probabilities_as", "float32")
    probability_reduction(kind)  # ValueError before any work
    if probabilities:
        probs = yield from iter_probabilities(run.unet, image, axes=run.axes, **kwargs)
        maps = label_maps(probs, run.unet.target, run.options.decoding, run.options.instances)
        probs = probabilities_as(probs, kind)
    else:
        probs = None
        maps = yield from iter_tiled(run.unet, image, axes=run.axes,
                                     network=Reduced(run.unet, run.options), **kwargs)
        maps = maps[..., 0]
    release_free_memory()  # the network's freed windows, before decoding needs its own
    return probs, labels_from_maps(maps, spatial, run.options, run.unet.target)


def iter_segment(model: Any, image: Any, options: Any = None, *, axes: str | None = None,
                 **kwargs: Any) -> Generator[PredictProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Like `iter_predict`, but returns ``(probabilities, labels)`` from its one pass.

    ``options`` is a `napari_unet.labels.options.LabelOptions` (default: instance
    labels with the model's values); the other arguments are those of
    `iter_predict`. Labels are described in `segment`.
    """
    return (yield from iter_run(plan_run(model, np.shape(image), options, axes), image,
                                **kwargs))


def probabilities_and_labels(model: Any, image: Any, options: Any = None, *,
                             axes: str | None = None,
                             callback: Callable[[PredictProgress], None] | None = None,
                             **kwargs: Any) -> tuple[Any, Any]:
    """Probabilities and labels of ``image`` from one network pass (see `iter_segment`).

    For a dask ``image`` both are lazy dask arrays sharing one graph, so
    computing both runs the network once (see `napari_unet.prediction.lazy`). For a
    numpy ``image``, ``probabilities=False`` among ``kwargs`` gives None for them and
    copies back only what labels need (`iter_run`).
    """
    if not _is_dask(image):
        return drain(iter_segment(model, image, options, axes=axes, **kwargs), callback)
    kwargs.pop("probabilities", None)
    kind = kwargs.pop("probabilities_as", "float32")
    from .lazy import predict_dask
    from .lazy_labels import label_halo, lazy_labels
    from .reduced import probabilities_as, probability_reduction

    dtype = probability_reduction(kind)[2]  # ValueError before any work
    run = plan_run(model, image.shape, options, axes)
    probs = predict_dask(run.unet, image, axes=run.axes, **kwargs)
    labels = lazy_labels(probs, run.axes.replace("C", ""), run.options, run.unet.target,
                         label_halo(run.unet.info))
    if kind != "float32":  # labels from float32; the probabilities converted per block
        probs = probs.map_blocks(probabilities_as, kind, dtype=dtype)
    return probs, labels


def segment(
    model: Any,
    image: Any,
    *,
    threshold: float | None = None,
    instances: bool = True,
    min_size: int | None = None,
    split_touching: bool = False,
    link_planes: bool = False,
    seed_threshold: float | None = None,
    axes: str | None = None,
    callback: Callable[[PredictProgress], None] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Label image of ``image``: the spatial shape of the input, smallest integer dtype.

    Foreground models: pixels with probability > ``threshold`` are foreground;
    with ``instances`` each connected object gets its own id (``split_touching``
    separates touching objects by a distance-transform watershed). Boundary
    models (trained on instance labels): objects grow from seeds of interior
    probability > ``seed_threshold`` over the foreground by a watershed, so
    touching objects stay apart. Objects under ``min_size`` pixels are removed;
    ``link_planes`` connects objects across Z instead of labelling each plane
    alone. Without ``instances`` the result is a 0/1 mask (multi-class models:
    the class index of each pixel). ``threshold``, ``seed_threshold`` and
    ``min_size`` default to the model's calibrated values. A dask ``image`` gives
    lazy labels. Other keyword arguments are those of `iter_predict`; every
    option is checked before any work.
    """
    if "probabilities" in kwargs:
        raise ValueError("segment() returns the labels only, so it takes no probabilities; for "
                         "the probabilities too, use napari_unet.probabilities_and_labels(model, "
                         "image, ...), which gives both from one pass of the network.")
    options = LabelOptions(threshold, instances, min_size, split_touching, link_planes,
                           seed_threshold)
    return probabilities_and_labels(model, image, options, axes=axes, callback=callback,
                                    probabilities=False, **kwargs)[1]
