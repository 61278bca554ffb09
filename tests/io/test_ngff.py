"""OME-Zarr (NGFF 0.4 and 0.5) in, NGFF labels out with the same axes, scale and units,
read back by ome-zarr-py; standalone, inside the input, and in folder mode."""

import json

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.model.config import UNetConfig
from napari_unet.model.files import save_model
from napari_unet.model.unet import UNetModel

pytest.importorskip("ome_zarr")
import zarr  # noqa: E402
from ome_zarr.format import FormatV04, FormatV05  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402
from ome_zarr.writer import write_image  # noqa: E402

SCALE = {"c": 1.0, "z": 2.0, "y": 0.25, "x": 0.25}
FORMATS = {"0.4": FormatV04, "0.5": FormatV05}


def _ngff(path, data, axes, version):
    fmt = FORMATS[version]()
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(data, root, axes=axes, fmt=fmt, scale_factors=(),
                scale={a: SCALE[a] for a in axes},
                axes_units={a: "micrometer" for a in axes if a != "c"})
    return path


def _read_back(path):
    """(axes as ome-zarr-py reads them, level-0 scale, level-0 array) of an NGFF image."""
    node = next(n for n in Reader(parse_url(str(path)))() if n.data)
    axes = [(a["name"], a.get("unit")) for a in node.metadata["axes"]]
    scale = next(t["scale"] for t in node.metadata["coordinateTransformations"][0]
                 if t["type"] == "scale")
    return axes, scale, np.asarray(node.data[0])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for c in (1, 2):
        unet = UNetModel.new(UNetConfig(depth=2, start_neurons=4, in_channels=c))
        out[c] = (unet, save_model(unet, folder / f"c{c}.keras"))
    return out


@pytest.mark.parametrize("version,axes", [("0.4", "zyx"), ("0.5", "zyx"), ("0.5", "czyx")])
def test_cli_ngff_in_ngff_labels_out_with_the_same_axes_and_scale(tmp_path, models, version,
                                                                  axes):
    from napari_unet.prediction.api import segment

    shape = (2, 3, 40, 48) if axes == "czyx" else (3, 40, 48)
    image = np.random.default_rng(0).integers(0, 4000, shape).astype(np.uint16)
    source = _ngff(tmp_path / "in.ome.zarr", image, axes, version)
    unet, model = models[2 if "c" in axes else 1]
    out, probs = tmp_path / "labels.ome.zarr", tmp_path / "probs.ome.zarr"
    assert main(["predict", str(model), str(source), str(out), "--probabilities", str(probs),
                 "--semantic"]) == 0
    spatial = [(a, "micrometer") for a in "zyx"]
    for path in (out, probs):
        read_axes, scale, data = _read_back(path)
        assert read_axes == spatial and scale == [2.0, 0.25, 0.25], path.name
    assert (out / ("zarr.json" if version == "0.5" else ".zattrs")).is_file()
    expected = segment(unet, image, instances=False, axes=axes.upper())
    np.testing.assert_array_equal(_read_back(out)[2], expected)


def test_labels_into_the_input_are_listed_and_leave_the_image_alone(tmp_path, models):
    image = np.random.default_rng(1).integers(0, 4000, (3, 40, 48)).astype(np.uint16)
    source = _ngff(tmp_path / "in.ome.zarr", image, "zyx", "0.5")
    before = {p.relative_to(source): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    model = str(models[1][1])
    assert main(["predict", model, str(source), "nuclei", "--into-input"]) == 0
    after = {p.relative_to(source): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k in before} == before
    listing = json.loads((source / "labels" / "zarr.json").read_text())["attributes"]["ome"]
    assert listing["labels"] == ["nuclei"]
    read_axes, scale, data = _read_back(source / "labels" / "nuclei")
    assert scale == [2.0, 0.25, 0.25] and data.shape == image.shape
    label_attrs = json.loads((source / "labels" / "nuclei" / "zarr.json").read_text())
    assert "image-label" in label_attrs["attributes"]["ome"]
    assert main(["predict", model, str(source), "nuclei", "--into-input"]) == 2  # exists
    assert main(["predict", model, str(source), "nuclei", "--into-input", "--overwrite"]) == 0
    assert main(["predict", model, str(source), "a/b", "--into-input"]) == 2


def test_folders_of_ngff_images_give_ngff_labels_and_resume(tmp_path, models):
    from napari_unet.prediction.folders import predict_folder

    (tmp_path / "in").mkdir()
    image = np.random.default_rng(2).integers(0, 4000, (2, 40, 48)).astype(np.uint16)
    _ngff(tmp_path / "in" / "a.ome.zarr", image, "zyx", "0.4")
    rows = predict_folder(models[1][0], tmp_path / "in", tmp_path / "out")
    assert [(r.output, r.status) for r in rows] == [("a.ome.zarr", "done")], rows[0].error
    assert _read_back(tmp_path / "out" / "a.ome.zarr")[1] == [2.0, 0.25, 0.25]
    again = predict_folder(models[1][0], tmp_path / "in", tmp_path / "out")
    assert [r.status for r in again] == ["skipped"]


def test_train_and_evaluate_take_ome_zarr_images_and_masks(tmp_path, capsys):
    from napari_unet.io.images import ImageFile, read_image
    from napari_unet.samples.nuclei import make_nuclei

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for s in range(2):
        planes = [make_nuclei((48, 48), seed=10 * s + z) for z in range(2)]
        _ngff(images / f"s{s}.ome.zarr", np.stack([p[0] for p in planes]), "zyx", "0.5")
        _ngff(masks / f"s{s}.ome.zarr", np.stack([p[1] for p in planes]).astype(np.uint16),
              "zyx", "0.4")
    header = ImageFile(images / "s0.ome.zarr")
    assert header.shape == (2, 48, 48) and header.axes == "ZYX"
    assert read_image(masks / "s1.ome.zarr").dtype == np.uint16
    model = tmp_path / "m.keras"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(model),
                 "--depth", "2", "--start-neurons", "4", "--epochs", "1", "--steps", "1",
                 "--patch-size", "32", "--batch-size", "2"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), "--images", str(images), "--masks", str(masks)]) == 0
    assert [row["image"] for row in json.loads(capsys.readouterr().out)["images"]] == [
        "s0.ome.zarr", "s1.ome.zarr"]


def test_a_failed_run_into_the_input_leaves_it_as_it_was(tmp_path, models, monkeypatch):
    from napari_unet.prediction import to_zarr

    source = _ngff(tmp_path / "in.ome.zarr", np.zeros((2, 40, 48), np.uint16), "zyx", "0.4")
    before = sorted(p.relative_to(source) for p in source.rglob("*"))

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(to_zarr, "_write", fail)
    assert main(["predict", str(models[1][1]), str(source), "cells", "--into-input"]) == 2
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
