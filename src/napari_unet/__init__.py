"""napari-unet: build, train and run a U-Net on napari layers, scripts and the CLI.

Importing this package is cheap: TensorFlow/Keras load only when a model is
built, trained, run or loaded. The public API is re-exported lazily::

    from napari_unet import UNetConfig, train, predict, segment, save_model, load_model
"""

from __future__ import annotations

import importlib

from .version import __version__

_EXPORTS = {
    "UNetConfig": "config",
    "build_unet": "model",
    "UNetModel": "model",
    "count_parameters": "costs",
    "flops_per_megapixel": "costs",
    "receptive_field": "costs",
    "halo": "costs",
    "train": "training",
    "iter_train": "training",
    "TrainProgress": "progress",
    "TrainPreview": "progress",
    "Preview": "training_preview",
    "iter_uncertainty": "uncertainty",
    "Uncertainty": "uncertainty",
    "predict": "prediction",
    "iter_predict": "prediction",
    "segment": "prediction",
    "probabilities_and_labels": "prediction",
    "LabelOptions": "postprocess",
    "predict_folder": "folders",
    "iter_predict_folder": "folders",
    "save_model": "model_files",
    "load_model": "model_files",
    "make_nuclei": "sample_data",
    "evaluate": "metrics",
    "evaluate_classes": "metrics",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
