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
- axes batch, y, x, channel for a 2D network and batch, z, y, x, channel for a 3D
  one (the network is channel-last); each spatial axis takes any multiple of its size
  multiple (``2**depth`` for y and x, 2 to the power of the levels that pool z for z)
  from the smallest tile up (twice its halo plus one step), and the output declares
  each axis's halo, so tiling consumers crop the border the network cannot see; a 3D
  network whose calibration recorded the voxel size gives it as the axes' ``scale``
  (no unit: the images' unit is not recorded);
- a test input and the network's output for it, a cover image (for a 3D network its
  middle z plane), a README with the training record, and the U-Net paper as citation;
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
SPATIAL = {2: ("y", "x"), 3: ("z", "y", "x")}  # a 2D and a 3D network's spatial axes


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
    (``.zip``); returns the path. ``test_image`` (YX or YXC for a 2D network, ZYX or
    ZYXC for a 3D one; default: a synthetic nuclei image, or stack) becomes the
    package's test input; its expected output is computed here with the exported
    network. Raises ``ValueError`` for a bad path, a test image of the wrong shape or
    missing packages; the zip is written under a partial name and renamed when complete.
    """
    from ..io.outputs import atomic_path, check_outputs
    from ..model.files import resolve_model

    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"A bioimage.io package is a .zip file; got {path.name!r}.")
    check_outputs({"output": path}, {}, overwrite=overwrite)
    v0_5 = _spec()
    unet = resolve_model(model)
    raw = _test_input(unet, test_image)  # checked before anything is built
    with tempfile.TemporaryDirectory(prefix="napari-unet-bioimageio-") as tmp:
        tmp = Path(tmp)
        files = _write_files(unet, tmp, raw)
        descr = _describe(v0_5, unet, files, name, authors, description, license)
        from bioimageio.spec import save_bioimageio_package

        with atomic_path(path) as partial:
            save_bioimageio_package(descr, output_path=partial)
    return path


def _write_files(unet: Any, folder: Path, raw: np.ndarray) -> dict[str, Path]:
    """Weights, test tensors (input: ``raw`` from `_test_input`), cover, README and the
    napari-unet model file in ``folder``; returns their paths by role."""
    from ..backend.runtime import load_keras
    from ..io.images import write_image
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
    x = _scale_range(unet, raw)
    y = np.asarray(network.predict(x, verbose=0), np.float32)
    np.save(files["input"], raw)
    np.save(files["output"], y)
    write_image(files["cover"], _cover(raw, y, unet.threshold))
    files["readme"].write_text(_readme(unet, keras.__version__), encoding="utf-8")
    return files


def _cover(raw: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """The cover (H, W, 3) uint8: the first channel of the test input ``raw`` (1, Y, X, C)
    or (1, Z, Y, X, C), stretched to 0-255, with the labels of the output ``y`` (same
    layout, probabilities) outlined; the middle z plane of a volume."""
    from ..io.images import overlay

    plane = (0,) if raw.ndim == 4 else (0, raw.shape[1] // 2)
    grey, probs = raw[plane][..., 0], y[plane]
    grey = np.clip((grey - grey.min()) / max(float(np.ptp(grey)), 1e-12) * 255, 0, 255).astype(np.uint8)
    labels = (probs[..., 0] > threshold) if probs.shape[-1] == 1 else probs.argmax(-1) > 0
    return overlay(grey, labels.astype(np.uint8))


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
    shape = (None,) * (len(network.input_shape) - 1) + (network.input_shape[-1],)
    archive.add_endpoint("serve", lambda x: {"probability": network(x, training=False)},
                         input_signature=[tf.TensorSpec(shape, tf.float32)])
    with quiet_native_stderr():
        archive.write_out(str(folder), verbose=False)
    shutil.make_archive(str(folder), "zip", root_dir=folder)
    return True


def _test_input(unet: Any, image: np.ndarray | None) -> np.ndarray:
    """The test input, float32 (1, Y, X, C) for a 2D network or (1, Z, Y, X, C) for a 3D
    one: ``image`` (YX or YXC; ZYX or ZYXC) or a synthetic nuclei image (256 x 256 px) or
    stack (16 x 64 x 64 voxels), at least the smallest tile; each axis cut to a multiple
    of its size multiple. ``ValueError`` for another shape or a smaller image."""
    from ..samples.nuclei import make_nuclei, make_nuclei_stack

    config, lows = unet.config, _min_sizes(unet)
    if image is None:
        image = (make_nuclei((max(lows[0], 256), max(lows[1], 256)), seed=0)[0]
                 if config.ndim == 2 else make_nuclei_stack(
                     (max(lows[0], 16), max(lows[1], 64), max(lows[2], 64)), seed=0)[0])
        image = np.repeat(image[..., None], config.in_channels, axis=-1)
    image = np.asarray(image, np.float32)
    if image.ndim == config.ndim:
        image = image[..., None]
    axes = "".join(SPATIAL[config.ndim]).upper()
    if image.ndim != config.ndim + 1 or image.shape[-1] != config.in_channels:
        raise ValueError(f"test_image must be {axes} or {axes}C with {config.in_channels} "
                         f"channel(s) for this {config.ndim}D network (a 2D network takes YX or "
                         f"YXC, a 3D network ZYX or ZYXC); got shape {image.shape}.")
    cut = [n // m * m for n, m in zip(image.shape, config.size_multiples)]
    if any(n < low for n, low in zip(cut, lows)):
        raise ValueError(f"test_image must be at least {_by_axis(lows)} "
                         f"{'px' if config.ndim == 2 else 'voxels'} ({' x '.join(axes)}: twice "
                         f"the halo {_by_axis(_halos(unet))} plus one step, in steps of "
                         f"{_by_axis(config.size_multiples)}); got {image.shape[:config.ndim]}.")
    return image[(None, *(slice(n) for n in cut))]


def _by_axis(sizes: Any) -> str:
    return " x ".join(str(n) for n in sizes)


def _halos(unet: Any) -> tuple[int, ...]:
    """The halo in pixels of each spatial axis, (Y, X) or (Z, Y, X)."""
    from ..model.costs import halos

    return halos(unet.config)


def _min_sizes(unet: Any) -> tuple[int, ...]:
    """The smallest input the package allows per spatial axis, (Y, X) or (Z, Y, X) in
    pixels: twice the axis's halo plus one step, on its size multiple."""
    from ..model.costs import round_up

    return tuple(round_up(2 * h + m, m) for h, m in zip(_halos(unet), unet.config.size_multiples))


def _scale_range(unet: Any, raw: np.ndarray) -> np.ndarray:
    """bioimage.io's ``scale_range`` over the spatial axes of ``raw`` (1, [Z,] Y, X, C), per
    channel: what consumers will feed."""
    norm, spatial = unet.normalization, tuple(range(1, raw.ndim - 1))
    lo = np.percentile(raw, norm.low, axis=spatial, keepdims=True)
    hi = np.percentile(raw, norm.high, axis=spatial, keepdims=True)
    return ((raw - lo) / (hi - lo + EXPORT_EPSILON)).astype(np.float32)


def _readme(unet: Any, keras_version: str) -> str:
    info, history = unet.info, unet.history
    lines = [
        f"# {unet.info.get('name', 'napari-unet U-Net')}", "",
        "A U-Net (Ronneberger et al., 2015) built and trained with napari-unet.", "",
        "## Network", "",
        f"- config: `{json.dumps(unet.config.to_dict(), sort_keys=True)}`",
        f"- input: {_input_sizes(unet)}, {unet.config.in_channels} channel(s), normalised per "
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


def _input_sizes(unet: Any) -> str:
    """The README's words for the input's spatial axes and the sizes they take."""
    config = unet.config
    if config.ndim == 2:
        return (f"y, x (any multiple of {config.size_multiple} px from "
                f"{_min_sizes(unet)[0]} px)")
    return (f"z, y, x (any multiple of {_by_axis(config.size_multiples)} voxels from "
            f"{_by_axis(_min_sizes(unet))} voxels; halo {_by_axis(_halos(unet))} voxels)")


def _scales(unet: Any) -> list[dict[str, float]]:
    """Per spatial axis, the keywords that give its ``scale``: for a 3D network whose
    calibration recorded one voxel size with Z, Y and X (``info["calibration"]["spacing"]``,
    in the images' unit, which is not recorded), that size; else none (scale 1)."""
    spacing = (unet.info.get("calibration") or {}).get("spacing")
    axes = "".join(SPATIAL[unet.config.ndim]).upper()
    if unet.config.ndim == 2 or not isinstance(spacing, dict) or not set(axes) <= set(spacing):
        return [{} for _ in axes]
    return [{"scale": float(spacing[a])} for a in axes]


def _axes(v0_5: Any, unet: Any, output: bool) -> list:
    """The axes of the input (``output`` False) or output tensor: batch, [z,] y, x, channel,
    each spatial axis with its size multiple as step from the smallest tile (input) or
    the input's size and its halo (output), in pixels."""
    ids = [v0_5.AxisId(a) for a in SPATIAL[unet.config.ndim]]
    if not output:
        space = [v0_5.SpaceInputAxis(id=a, size=v0_5.ParameterizedSize(min=low, step=m), **scale)
                 for a, low, m, scale in zip(ids, _min_sizes(unet), unet.config.size_multiples,
                                             _scales(unet))]
        names = [f"channel{i}" for i in range(unet.config.in_channels)]
    else:
        space = [v0_5.SpaceOutputAxisWithHalo(
            id=a, halo=h, size=v0_5.SizeReference(tensor_id=v0_5.TensorId("raw"), axis_id=a),
            **scale) for a, h, scale in zip(ids, _halos(unet), _scales(unet))]
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
    norm, ndim = unet.normalization, unet.config.ndim
    pre = [v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")),
           v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
               axes=tuple(v0_5.AxisId(a) for a in SPATIAL[ndim]), min_percentile=norm.low,
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
        description=(description or f"{'3D ' * (ndim == 3)}U-Net ({unet.config.depth} levels, "
                     f"{unet.config.start_neurons} start filters) trained with napari-unet")[:128],
        authors=[v0_5.Author(name=a) for a in (authors or ["napari-unet user"])],
        cite=[v0_5.CiteEntry(text=UNET_CITATION, doi=v0_5.Doi(UNET_DOI))],
        license=license, documentation=v0_5.FileDescr(source=files["readme"]),
        covers=[v0_5.FileDescr(source=files["cover"])],
        tags=["napari-unet", "unet", "segmentation", f"{ndim}d"],
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
