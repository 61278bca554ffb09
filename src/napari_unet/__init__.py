"""napari-unet: build, train and run a U-Net on napari layers, scripts and the CLI.

Importing this package is cheap: TensorFlow/Keras load only when a model is
built, trained, run or loaded. The public API is re-exported lazily::

    from napari_unet import UNetConfig, train, predict, segment, save_model, load_model
"""

from __future__ import annotations

import importlib

from .version import __version__

_EXPORTS = {
    "UNetConfig": "model.config",
    "build_unet": "model.network",
    "UNetModel": "model.unet",
    "ModelSummary": "model.summary",
    "Decoding": "model.decoding",
    "count_parameters": "model.costs",
    "flops_per_megapixel": "model.costs",
    "receptive_field": "model.costs",
    "halo": "model.costs",
    "save_model": "model.files",
    "load_model": "model.files",
    "train": "training.job",
    "iter_train": "training.job",
    "TrainSettings": "training.settings",
    "TrainRequest": "training.request",
    "TrainProgress": "common.progress",
    "TrainPreview": "common.progress",
    "PredictProgress": "common.progress",
    "Preview": "training.preview",
    "predict": "prediction.api",
    "iter_predict": "prediction.api",
    "segment": "prediction.api",
    "probabilities_and_labels": "prediction.api",
    "iter_uncertainty": "prediction.uncertainty",
    "uncertainty": "prediction.uncertainty",
    "Uncertainty": "prediction.uncertainty",
    "predict_folder": "prediction.folders",
    "iter_predict_folder": "prediction.folders",
    "LabelOptions": "labels.options",
    "evaluate": "labels.metrics",
    "evaluate_classes": "labels.metrics",
    "make_nuclei": "samples.nuclei",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
