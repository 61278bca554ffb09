"""napari-unet: build, train and run a U-Net on napari layers, scripts and the CLI.

Importing this package is cheap: TensorFlow/Keras load only when a model is
built, trained, run or loaded. The public API is re-exported lazily::

    from napari_unet import UNetConfig, train, predict, segment, save_model, load_model
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-unet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    "UNetConfig": "config",
    "build_unet": "model",
    "UNetModel": "model",
    "count_parameters": "model",
    "flops_per_megapixel": "model",
    "receptive_field": "model",
    "halo": "model",
    "train": "training",
    "iter_train": "training",
    "TrainProgress": "training",
    "predict": "prediction",
    "iter_predict": "prediction",
    "segment": "prediction",
    "save_model": "io",
    "load_model": "io",
    "make_nuclei": "sample_data",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
