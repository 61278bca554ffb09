"""BioImage Model Zoo (bioimage.io) packages: export a napari-unet model, import one back.

`export_bioimageio` writes a bioimage.io model package (a zip with ``rdf.yaml``,
format 0.5) that bioimageio.core (and the tools built on it) and napari-unet run:

- weights in the Keras 3 format (``keras_v3``): the float32 network, as saved by
  `save_model`, without napari-unet's own metadata entry; with the TensorFlow
  backend also a TensorFlow SavedModel (``tensorflow_saved_model_bundle``, the
  format deepImageJ runs) whose ``serve`` endpoint returns ``{"probability": ...}``;
- pre-processing ``scale_range`` with the model's percentiles per channel (the same
  mapping as `PercentileNormalization`, with bioimage.io's epsilon 1e-6), and the
  probabilities as output; the threshold and class names are in the documentation
  and in ``config.napari_unet``;
- axes batch, y, x, channel (the network is channel-last); y and x take any multiple
  of ``2**depth`` from the smallest tile up, and the output declares the halo, so
  tiling consumers crop the border the network cannot see;
- a test input and the network's output for it, a cover image, a README with the
  training record, and the U-Net paper as citation;
- napari-unet's model file as an attachment, so `import_bioimageio` restores the model
  exactly (threshold, class names, history).

Needs ``pip install bioimageio.spec`` (and ``bioimageio.core`` to test packages).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..model.package import PACKAGE_ATTACHMENT as ATTACHMENT

__all__ = ["export_bioimageio", "import_bioimageio", "EXPORT_EPSILON"]

EXPORT_EPSILON = 1e-6
UNET_CITATION = ("Ronneberger, O., Fischer, P., Brox, T. U-Net: Convolutional Networks for "
                 "Biomedical Image Segmentation. MICCAI 2015.")
UNET_DOI = "10.1007/978-3-319-24574-4_28"


def _spec() -> Any:
    try:
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise ValueError("Exporting to the BioImage Model Zoo needs the bioimageio.spec "
                         "package: pip install bioimageio.spec") from None
    return v0_5


def export_bioimageio(model: Any, path: str | Path, *, name: str | None = None,
                      authors: list[str] | None = None, description: str | None = None,
                      license: str = "CC-BY-4.0", test_image: np.ndarray | None = None,
                      overwrite: bool = False) -> Path:
    """Write ``model`` (a `UNetModel` or a model file) as a bioimage.io package ``path``
    (``.zip``); returns the path. ``test_image`` (YX or YXC, default: a synthetic
    nuclei image) becomes the package's test input; its expected output is computed
    here with the exported network. Raises ``ValueError`` for a bad path or missing
    packages; the zip is written under a partial name and renamed when complete.
    """
    from ..io.outputs import atomic_path, check_outputs
    from ..model.files import resolve_model

    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"A bioimage.io package is a .zip file; got {path.name!r}.")
    check_outputs({"output": path}, {}, overwrite=overwrite)
    v0_5 = _spec()
    unet = resolve_model(model)
    if unet.config.ndim == 3:
        raise ValueError("bioimage.io export is for 2D networks for now: a 3D network's "
                         "package (z in its axes) is not written yet; share its .keras file.")
    with tempfile.TemporaryDirectory(prefix="napari-unet-bioimageio-") as tmp:
        tmp = Path(tmp)
        files = _write_files(unet, tmp, test_image)
        descr = _describe(v0_5, unet, files, name, authors, description, license)
        from bioimageio.spec import save_bioimageio_package

        with atomic_path(path) as partial:
            save_bioimageio_package(descr, output_path=partial)
    return path


def _write_files(unet: Any, folder: Path, test_image: np.ndarray | None) -> dict[str, Path]:
    """Weights, test tensors, cover, README and the napari-unet model file in ``folder``."""
    from ..backend.runtime import load_keras
    from ..io.images import overlay, write_image
    from ..model.files import save_model
    from ..model.network import build_unet

    keras = load_keras()
    network = build_unet(unet.config, precision="float32")
    network.set_weights(unet.keras_model.get_weights())
    files = {"weights": folder / "weights.keras", "model": folder / ATTACHMENT,
             "input": folder / "test_input.npy", "output": folder / "test_output.npy",
             "cover": folder / "cover.png", "readme": folder / "README.md"}
    network.save(files["weights"])
    if _saved_model(network, folder / "saved_model"):
        files["saved_model"] = folder / "saved_model.zip"
    save_model(unet, files["model"])
    raw = _test_input(unet, test_image)
    x = _scale_range(unet, raw)
    y = np.asarray(network.predict(x, verbose=0), np.float32)
    np.save(files["input"], raw)
    np.save(files["output"], y)
    grey = raw[0, ..., 0]
    grey = np.clip((grey - grey.min()) / max(float(np.ptp(grey)), 1e-12) * 255, 0, 255).astype(np.uint8)
    labels = (y[0, ..., 0] > unet.threshold) if y.shape[-1] == 1 else y[0].argmax(-1) > 0
    write_image(files["cover"], overlay(grey, labels.astype(np.uint8)))
    files["readme"].write_text(_readme(unet, keras.__version__), encoding="utf-8")
    return files


def _saved_model(network: Any, folder: Path) -> bool:
    """A TensorFlow SavedModel of ``network`` zipped beside ``folder`` (the format
    deepImageJ runs), with a ``serve`` endpoint returning ``{"probability": ...}``;
    False (nothing written) on backends other than TensorFlow."""
    import shutil

    from ..backend.runtime import backend_name, load_keras, quiet_native_stderr

    if backend_name() != "tensorflow":
        return False
    import tensorflow as tf

    keras = load_keras()
    archive = keras.export.ExportArchive()
    archive.track(network)
    channels = network.input_shape[-1]
    archive.add_endpoint("serve", lambda x: {"probability": network(x, training=False)},
                         input_signature=[tf.TensorSpec((None, None, None, channels), tf.float32)])
    with quiet_native_stderr():
        archive.write_out(str(folder), verbose=False)
    shutil.make_archive(str(folder), "zip", root_dir=folder)
    return True


def _test_input(unet: Any, image: np.ndarray | None) -> np.ndarray:
    """The test input (1, Y, X, C) float32: ``image`` or a synthetic nuclei image, cut to
    a multiple of ``2**depth`` at least the smallest tile the package allows."""
    from ..model.costs import halo
    from ..samples.nuclei import make_nuclei

    m, side = unet.config.size_multiple, _min_size(unet)
    if image is None:
        image = make_nuclei((max(side, 256), max(side, 256)), seed=0)[0]
        image = np.repeat(image[..., None], unet.config.in_channels, axis=-1)
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] != unet.config.in_channels:
        raise ValueError(f"test_image must be YX or YXC with {unet.config.in_channels} channel(s); "
                         f"got shape {image.shape}.")
    h, w = (image.shape[0] // m * m, image.shape[1] // m * m)
    if min(h, w) < side:
        raise ValueError(f"test_image must be at least {side} x {side} px (twice the "
                         f"{halo(unet.config)}-px halo, in steps of {m}); got {image.shape[:2]}.")
    return image[None, :h, :w]


def _min_size(unet: Any) -> int:
    from ..model.costs import halo, round_up

    return round_up(2 * halo(unet.config) + unet.config.size_multiple, unet.config.size_multiple)


def _scale_range(unet: Any, raw: np.ndarray) -> np.ndarray:
    """bioimage.io's ``scale_range`` over y and x, per channel: what consumers will feed."""
    norm = unet.normalization
    lo = np.percentile(raw, norm.low, axis=(1, 2), keepdims=True)
    hi = np.percentile(raw, norm.high, axis=(1, 2), keepdims=True)
    return ((raw - lo) / (hi - lo + EXPORT_EPSILON)).astype(np.float32)


def _readme(unet: Any, keras_version: str) -> str:
    info, history = unet.info, unet.history
    lines = [
        f"# {unet.info.get('name', 'napari-unet U-Net')}", "",
        "A U-Net (Ronneberger et al., 2015) built and trained with napari-unet.", "",
        "## Network", "",
        f"- config: `{json.dumps(unet.config.to_dict(), sort_keys=True)}`",
        f"- input: y, x (any multiple of {unet.config.size_multiple} px from "
        f"{_min_size(unet)} px), {unet.config.in_channels} channel(s), normalised per "
        f"channel from percentile {unet.normalization.low} to {unet.normalization.high}",
        f"- output: probabilities of {', '.join(unet.class_names[1:] if unet.config.n_classes == 1 else unet.class_names)}; "
        f"foreground is probability > {unet.threshold}",
        f"- Keras {keras_version}", "",
        "## Training", "",
        f"- settings and provenance: `{json.dumps(info, sort_keys=True, default=str)}`",
    ]
    if history.get("loss"):
        lines.append(f"- epochs: {len(history['loss'])}, final loss {history['loss'][-1]:.4f}")
    for key in ("val_loss", "val_iou"):
        if history.get(key):
            lines.append(f"- best {key}: {min(history[key]) if 'loss' in key else max(history[key]):.4f}")
    lines += ["", "## Validation", "",
              "The validation figures above were measured on held-out blocks of the training "
              "images. Measure the model on your own annotated images before relying on it: "
              "`napari-unet evaluate MODEL --images DIR --masks DIR`.", ""]
    return "\n".join(lines)


def _axes(v0_5: Any, unet: Any, output: bool) -> list:
    from ..model.costs import halo

    m = unet.config.size_multiple
    if not output:
        space = [v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=v0_5.ParameterizedSize(
            min=_min_size(unet), step=m)) for a in ("y", "x")]
        names = [f"channel{i}" for i in range(unet.config.in_channels)]
    else:
        space = [v0_5.SpaceOutputAxisWithHalo(
            id=v0_5.AxisId(a), halo=halo(unet.config),
            size=v0_5.SizeReference(tensor_id=v0_5.TensorId("raw"), axis_id=v0_5.AxisId(a)))
            for a in ("y", "x")]
        names = (["foreground"] if unet.config.n_classes == 1 else
                 [_identifier(n) for n in unet.class_names])
    return [v0_5.BatchAxis(), *space, v0_5.ChannelAxis(
        channel_names=[v0_5.Identifier(n) for n in names])]


def _identifier(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else f"c_{out}"


def _describe(v0_5: Any, unet: Any, files: dict[str, Path], name: str | None,
              authors: list[str] | None, description: str | None, license: str) -> Any:
    """The `ModelDescr` (format 0.5) of the package."""
    from ..backend.runtime import backend_name, load_keras

    keras = load_keras()
    norm = unet.normalization
    pre = [v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")),
           v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
               axes=(v0_5.AxisId("y"), v0_5.AxisId("x")), min_percentile=norm.low,
               max_percentile=norm.high, eps=EXPORT_EPSILON))]
    inputs = [v0_5.InputTensorDescr(
        id=v0_5.TensorId("raw"), axes=_axes(v0_5, unet, False), preprocessing=pre,
        test_tensor=v0_5.FileDescr(source=files["input"]),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"))]
    outputs = [v0_5.OutputTensorDescr(
        id=v0_5.TensorId("probability"), axes=_axes(v0_5, unet, True),
        test_tensor=v0_5.FileDescr(source=files["output"]),
        data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)))]
    backend_version = _backend_version(backend_name())
    saved_model = None
    if "saved_model" in files:
        saved_model = v0_5.TensorflowSavedModelBundleWeightsDescr(
            source=files["saved_model"], tensorflow_version=v0_5.Version(backend_version),
            parent="keras_v3")
    weights = v0_5.WeightsDescr(keras_v3=v0_5.KerasV3WeightsDescr(
        source=files["weights"], keras_version=v0_5.Version(keras.__version__),
        backend=(backend_name(), v0_5.Version(backend_version))),
        tensorflow_saved_model_bundle=saved_model)
    return v0_5.ModelDescr(
        name=name or "napari-unet U-Net",
        description=(description or f"U-Net ({unet.config.depth} levels, "
                     f"{unet.config.start_neurons} start filters) trained with napari-unet")[:128],
        authors=[v0_5.Author(name=a) for a in (authors or ["napari-unet user"])],
        cite=[v0_5.CiteEntry(text=UNET_CITATION, doi=v0_5.Doi(UNET_DOI))],
        license=license, documentation=v0_5.FileDescr(source=files["readme"]),
        covers=[v0_5.FileDescr(source=files["cover"])],
        tags=["napari-unet", "unet", "segmentation", "2d"],
        inputs=inputs, outputs=outputs, weights=weights,
        attachments=[v0_5.FileDescr(source=files["model"])],
        config={"napari_unet": {"threshold": float(unet.threshold),
                                "class_names": list(unet.class_names),
                                "model_file": ATTACHMENT}},
    )


def _backend_version(backend: str) -> str:
    import importlib

    return importlib.import_module(backend).__version__.split("+")[0]


def import_bioimageio(path: str | Path) -> Any:
    """The `UNetModel` in a bioimage.io package written by `export_bioimageio`
    (restored from its attached napari-unet model file); ``ValueError`` for packages of
    other networks, which napari-unet cannot run. `load_model` does the same for any
    ``.zip`` path."""
    from ..model.files import load_model

    if Path(path).suffix.lower() != ".zip":
        raise ValueError(f"A bioimage.io package is a .zip file; got {Path(path).name!r}.")
    return load_model(path)
