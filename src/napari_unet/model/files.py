"""Save and load model files: Keras' ``.keras`` format plus our metadata.

A model file is the ``.keras`` zip that Keras writes, with one extra entry,
``napari_unet.json``, holding the config, normalisation, threshold, class
names, training history and versions (see `ModelSummary.metadata`). Saving writes
a temporary ``.NAME.PID.XXXXXXXX.keras`` file in the destination folder and
renames it over the destination, so a crash never leaves a half-written model;
temporary files left by writers that were killed are removed by the next save
to the same destination. The saved file's mode follows the umask.

What loading checks, in order (every failure is a `ModelFileError` naming the
file; `read_metadata` applies steps 1-4, `load_model` all of them):

1. The path ends in ``.keras`` and is a regular file (symlinks are followed;
   folders, FIFOs and devices are refused before they are opened).
2. The zip holds exactly Keras' ``metadata.json``, ``config.json`` and
   ``model.weights.h5`` plus ``napari_unet.json``, unencrypted, stored or
   deflated. Each JSON entry may declare at most 16 MiB and is read with a
   bounded read; the weights must declare 4 to 8 bytes per parameter of the
   stored config plus 4 MiB and expand at most 4x from the bytes really stored,
   so neither our reads nor Keras' allocate more than the file justifies.
3. Every metadata field is type- and range-checked; only ``format_version`` 1
   is known (newer files ask to upgrade napari-unet).
4. ``config.json`` is valid JSON of at most 16 MiB.
5. Before Keras builds anything, ``config.json`` must agree with the network
   `build_unet` makes from the stored config (keys a different Keras version
   omits are tolerated); after Keras' ``safe_mode`` load, the two networks must
   agree layer by layer (class, name, config, connectivity, weight shapes).
   The returned model is the rebuilt network holding the loaded weights.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..io.outputs import atomic_path
from .file_format import (
    METADATA_ENTRY,
    SUFFIX,
    ModelFileError,
    as_json,
    compare_networks,
    describe_network,
    read_model_file,
)
from .network import build_unet
from .package import extract_attachment
from .summary import ModelSummary
from .unet import UNetModel

__all__ = ["save_model", "load_model", "read_metadata", "read_summary", "resolve_model",
           "ModelFileError",
           "METADATA_ENTRY"]

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
    weights = model.keras_model.get_weights()
    if not all(np.isfinite(w).all() for w in weights):
        raise ValueError("The model's weights are not all finite (its training diverged); it "
                         "is not saved. Train again with a lower learning rate.")
    from ..backend.runtime import quiet_native_stderr

    export = build_unet(model.config, precision="float32")  # files hold float32 networks
    export.set_weights(weights)
    metadata = json.dumps(model.summary.metadata(), indent=2, default=_json_default)
    try:
        with atomic_path(path) as tmp:
            with quiet_native_stderr():
                export.save(tmp)
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(METADATA_ENTRY, metadata)
    except OSError as err:
        raise ValueError(f"Cannot write the model file {str(path)!r} ({err.strerror or err}); "
                         "choose a folder you can write to.") from err
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``napari_unet.json`` metadata (a dict) of a model file, without loading the network.

    The file and its metadata are checked as for `load_model`, except the
    network itself; raises `ModelFileError` naming the file.
    """
    return read_model_file(Path(path))[0]


def read_summary(path: str | os.PathLike) -> ModelSummary:
    """The `ModelSummary` of a model file, without loading the network (or Keras); the
    file is checked as for `read_metadata`."""
    return read_model_file(Path(path))[1]


def load_model(path: str | os.PathLike) -> UNetModel:
    """Load a model file written by `save_model` and return it as a `UNetModel`.

    The network is rebuilt by `build_unet` from the stored config, checked
    against the stored one and given its weights. A bioimage.io package (``.zip``)
    exported by napari-unet is read through its attached model file. Raises `ModelFileError` (a
    ``ValueError``) naming the file for any missing, corrupt, foreign, tampered
    or incompatible file.
    """
    from ..backend.devices import resolve_precision
    from ..backend.runtime import load_keras, quiet_native_stderr

    path = Path(path)
    if path.suffix.lower() == ".zip":
        return _load_package(path)
    keras = load_keras()
    _, summary, stored_config = read_model_file(path)
    reference = build_unet(summary.config, precision="float32")
    with quiet_native_stderr():
        expected = as_json(keras.saving.serialize_keras_object(reference))
    compare_networks(path, stored_config, expected, tolerate_missing=True)
    try:
        loaded = keras.saving.load_model(os.fspath(path), compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - any Keras failure means an unusable file
        raise ModelFileError(
            f"Keras could not load {str(path)!r} ({type(err).__name__}: {err}). The file is "
            "corrupt or was written by an incompatible version."
        ) from err
    compare_networks(path, describe_network(loaded), describe_network(reference), tolerate_missing=False)
    network = reference
    if resolve_precision(summary.config.precision) != "float32":
        network = build_unet(summary.config)  # mixed precision chosen for this device
    network.set_weights(loaded.get_weights())
    return UNetModel(network, summary)


def _load_package(path: Path) -> UNetModel:
    """The model in a bioimage.io package exported by napari-unet: its attached model file
    (`napari_unet.model.package`), loaded as a model file; every `ModelFileError` names
    the package."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="napari-unet-import-") as tmp:
        attachment = extract_attachment(path, Path(tmp))
        try:
            return load_model(attachment)
        except ModelFileError as err:
            message = str(err).replace(repr(str(attachment)), f"{str(path)!r} (its attached "
                                                              "model file)")
            raise ModelFileError(message) from None


def resolve_model(model: Any) -> UNetModel:
    """``model`` itself if it is a `UNetModel`, else the model file at that path (str or
    path-like) loaded with `load_model`, or a bioimage.io package (``.zip``) exported by
    napari-unet; ``ValueError`` for anything else."""
    if isinstance(model, UNetModel):
        return model
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        return load_model(os.fsdecode(model))
    raise ValueError(
        f"model must be a UNetModel (from train() or load_model()) or a path to a "
        f".keras model file; got {type(model).__name__}."
    )
