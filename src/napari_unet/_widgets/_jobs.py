"""The Run widget's jobs: plain functions that run in a napari worker, ask the engine for
labels (of a layer, a folder, or a lazy layer's blocks) and give back LayerDataTuples
placed like the input layer. No Qt and no ML here."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.protocol import Engine
from ._layers import without_channel
from ._lazy_fill import EngineBlockPredictor

__all__ = ["result_layers", "uncertainty_layers", "run_job", "folder_job", "lazy_run_job",
           "as_lazy"]


def result_layers(labels: Any, probs: Any, name: str, placement: dict,
                  provenance: dict | None = None) -> list[tuple]:
    """LayerDataTuples for the labels and (if not None) the probabilities of image ``name``,
    placed like the input layer, with ``provenance`` (what made them: model, settings,
    axes) in their metadata under ``"napari_unet"``. A multi-class model's probabilities
    get their class axis first, so napari shows one class per slider step (not an RGB
    picture)."""
    record = {"metadata": {"napari_unet": dict(provenance or {})}}
    out = [(labels, {"name": f"{name} U-Net", **placement, **record}, "labels")]
    if probs is not None:
        meta = {"name": f"{name} U-Net probability", "colormap": "magma",
                "contrast_limits": (0.0, 1.0), "blending": "additive", "rgb": False, **placement,
                **record}
        if probs.ndim == labels.ndim + 1:
            probs = np.moveaxis(probs, -1, 0)
            meta.update(scale=(1.0, *placement["scale"]),
                        translate=(0.0, *placement["translate"]))
            if "units" in placement:
                meta["units"] = ("pixel", *placement["units"])
        out.append((probs, meta, "image"))
    return out


def uncertainty_layers(entropy: Any, spread: Any, name: str, placement: dict) -> list[tuple]:
    """LayerDataTuples of the Monte-Carlo dropout maps of image ``name``: the entropy
    (shown: bright = unsure, paint there next) and the spread of the foreground
    probability (hidden), placed like the input layer."""
    return [(entropy, {"name": f"{name} U-Net uncertainty", "colormap": "inferno",
                       "contrast_limits": (0.0, 1.0), "blending": "additive", "rgb": False,
                       **placement}, "image"),
            (spread, {"name": f"{name} U-Net spread", "colormap": "viridis",
                      "contrast_limits": (0.0, 0.5), "blending": "additive", "rgb": False,
                      "visible": False, **placement}, "image")]


def run_job(engine: Engine, image: Any, axes: str | None, name: str, placement: dict,
            options: dict, model_path: str | None):
    """Worker body: predict in the engine (progress passed on) and return LayerDataTuples:
    the labels and, if asked, the probabilities and the uncertainty maps, placed like the
    input layer."""
    labels, probs, axes = yield from engine.segment(
        image, axes, options["labels"], tile_size=options["tile_size"],
        probabilities=options["probabilities"], model_path=model_path)
    placement = without_channel(placement, axes)
    tuples = result_layers(labels, probs, name, placement, {**options["provenance"], "axes": axes})
    if options["uncertainty"]:
        entropy, spread = yield from engine.uncertainty(image, axes, options["uncertainty"],
                                                        tile_size=options["tile_size"],
                                                        model_path=model_path)
        tuples += uncertainty_layers(entropy, spread, name, placement)
    return tuples


def folder_job(engine: Engine, in_dir: str, out_dir: str, options: dict, model_path: str | None):
    """Worker body: predict every image of ``in_dir`` into ``out_dir`` in the engine,
    passing one progress event per file on; returns the per-file results (dicts)."""
    from ..common.progress import PredictProgress

    call = engine.predict_folder(in_dir, out_dir, options["labels"],
                                 tile_size=options["tile_size"], model_path=model_path)
    while True:
        try:
            result = next(call)
        except StopIteration as done:
            return done.value
        yield PredictProgress(result.index, result.total, f"{result.file}: {result.status}"
                              + (f" ({result.error})" if result.error else ""))


def lazy_run_job(engine: Engine, image: Any, axes: str | None, name: str, placement: dict,
                 options: dict, model_path: str | None):
    """Worker body for dask/zarr layers: returns ``(tuples, predictors)``: LayerDataTuples
    of *lazy* (dask) labels, and probabilities and uncertainty maps if asked, and the
    `EngineBlockPredictor`s their blocks call. Only the normalisation statistics are
    computed here; `LazyFill` computes the blocks napari shows."""
    from ..common.arrays import resolve_axes
    from ..prediction.lazy import lazy_probabilities
    from ..prediction.lazy_labels import label_halo, lazy_labels

    summary = engine.model_summary(model_path)
    config, normalization = summary.config, summary.normalization
    axes = resolve_axes(axes, image.shape, config.in_channels)
    predictor = EngineBlockPredictor(engine, model_path, options.get("tile_size"))
    probs = lazy_probabilities(image, axes, config, normalization, predictor)
    label_options = options["labels"].for_unet(summary, axes)
    labels = lazy_labels(probs, axes.replace("C", ""), label_options, summary.target,
                         label_halo(summary.info))
    placement = without_channel(placement, axes)
    tuples = result_layers(labels, probs if options["probabilities"] else None, name, placement,
                           {**options["provenance"], "axes": axes, "lazy": True})
    predictors = [predictor]
    if options["uncertainty"]:
        predictors.append(EngineBlockPredictor(engine, model_path, options.get("tile_size"),
                                               options["uncertainty"]))
        maps = lazy_probabilities(image, axes, config, normalization, predictors[-1], outputs=2)
        tuples += uncertainty_layers(maps[..., 0], maps[..., 1], name, placement)
    return tuples, predictors


def as_lazy(data: Any) -> Any:
    """A dask array for dask or zarr layer data, else None."""
    module = type(data).__module__
    if module.startswith("dask."):
        return data
    if module.startswith("zarr"):
        import dask.array as da

        return da.from_zarr(data)
    return None
