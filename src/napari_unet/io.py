"""Save and load model files: Keras' ``.keras`` format plus our metadata.

A model file is the ``.keras`` zip that Keras writes, with one extra entry,
``napari_unet.json``, holding the config, normalisation, threshold, class
names, training history and versions (see `UNetModel.metadata`). Saving writes
a temporary ``.keras`` file in the destination folder and renames it over the
destination, so a crash never leaves a half-written model. Loading uses Keras'
``safe_mode`` and checks the network against the stored config.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .config import UNetConfig
from .data import PercentileNormalization
from .model import UNetModel, build_unet, count_parameters

METADATA_ENTRY = "napari_unet.json"
SUFFIX = ".keras"


class ModelFileError(ValueError):
    """A model file is missing, corrupt, foreign or incompatible."""


def save_model(model: UNetModel, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` (which must end in ``.keras``) atomically; returns the path.

    Only the architecture, weights and metadata are stored (no optimizer
    state), so files stay small and load without custom objects.
    """
    if not isinstance(model, UNetModel):
        raise ValueError(
            f"save_model expects a UNetModel (from train(), UNetModel.new() or load_model()); "
            f"got {type(model).__name__}."
        )
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"Model files must end in '{SUFFIX}'; got {path.name!r}.")
    if not path.parent.is_dir():
        raise ValueError(f"Folder {str(path.parent)!r} does not exist; create it first.")
    export = build_unet(model.config)
    export.set_weights(model.keras_model.get_weights())
    metadata = json.dumps(model.metadata(), indent=2, default=_json_default)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        export.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(METADATA_ENTRY, metadata)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``napari_unet.json`` metadata of a model file, without loading the network."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"Model file {str(path)!r} does not exist.")
    if path.suffix != SUFFIX:
        raise ModelFileError(
            f"{path.name!r} is not a '{SUFFIX}' model file; napari-unet only loads "
            f"'{SUFFIX}' files saved by save_model or the Build widget."
        )
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{str(path)!r} is not a valid .keras file (not a zip archive): it is corrupt "
            "or truncated. Save the model again."
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if METADATA_ENTRY not in names:
                raise ModelFileError(
                    f"{str(path)!r} is a Keras file but was not saved by napari-unet "
                    "(no napari_unet.json inside); build and train a model here, or save it "
                    "with napari_unet.save_model."
                )
            meta = json.loads(zf.read(METADATA_ENTRY))
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError) as err:
        raise ModelFileError(f"{str(path)!r} is corrupt: {err}. Save the model again.") from err
    if not isinstance(meta, dict) or meta.get("format") != "napari-unet":
        raise ModelFileError(f"{str(path)!r} has unrecognised metadata; it was not written by napari-unet.")
    return meta


def load_model(path: str | os.PathLike) -> UNetModel:
    """Load a model file written by `save_model`; raises `ModelFileError` (a ``ValueError``)."""
    from .devices import load_keras

    keras = load_keras()

    meta = read_metadata(path)
    try:
        config = UNetConfig.from_dict(meta["config"])
        normalization = PercentileNormalization.from_dict(meta.get("normalization", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{str(path)!r} has an invalid configuration: {err}") from err
    try:
        km = keras.saving.load_model(os.fspath(path), compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - any Keras failure means an unusable file
        raise ModelFileError(
            f"Keras could not load {str(path)!r} ({type(err).__name__}: {err}). The file is "
            "corrupt or was written by an incompatible version."
        ) from err
    expected = count_parameters(config)
    if km.count_params() != expected or km.input_shape[-1] != config.in_channels:
        raise ModelFileError(
            f"{str(path)!r}: the stored network ({km.count_params()} parameters, "
            f"{km.input_shape[-1]} channels) does not match its config ({expected} parameters, "
            f"{config.in_channels} channels)."
        )
    return UNetModel(
        keras_model=km,
        config=config,
        normalization=normalization,
        threshold=float(meta.get("threshold", 0.5)),
        class_names=list(meta.get("class_names", [])),
        history={k: list(v) for k, v in meta.get("history", {}).items()},
        info=dict(meta.get("info", {})),
    )
