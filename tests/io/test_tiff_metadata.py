"""TIFF files with their metadata: ImageJ hyperstacks and OME-TIFF in, labels (and
probabilities) out with the same axes, pixel sizes and unit, through the CLI."""

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.io.images import ImageFile, read_image, read_image_and_meta, write_images
from napari_unet.io.metadata import ImageMeta, canonical_unit
from napari_unet.model.config import UNetConfig
from napari_unet.model.files import save_model
from napari_unet.model.unet import UNetModel

PIXEL, Z_STEP = 0.25, 2.0


def _imagej(path, array, axes, unit="micron"):
    tifffile.imwrite(path, array, imagej=True, resolution=(1 / PIXEL, 1 / PIXEL),
                     metadata={"axes": axes, "spacing": Z_STEP, "unit": unit})
    return path


def _imagej_calibration(path):
    """(axes, spacing, unit, x pixel size, y pixel size) of an ImageJ file, as Fiji reads it."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        info, tags = tif.imagej_metadata, tif.pages[0].tags
        x, y = (tags[t].value for t in ("XResolution", "YResolution"))
        return (tif.series[0].axes, info.get("spacing"), info.get("unit"),
                x[1] / x[0], y[1] / y[0])


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Untrained tiny models saved to files: one input channel and two."""
    folder = tmp_path_factory.mktemp("models")
    return {c: save_model(UNetModel.new(UNetConfig(depth=2, start_neurons=4, in_channels=c)),
                          folder / f"c{c}.keras") for c in (1, 2)}


def test_units_of_imagej_ome_and_nifti_have_one_name():
    for spelling in ("micron", "µm", "\\u00B5m", "um", "micrometer"):
        assert canonical_unit(spelling) == "micrometer", spelling
    assert canonical_unit("mm") == "millimeter" and canonical_unit("sec") == "second"
    assert canonical_unit("pixel") is None and canonical_unit("parsec") == "parsec"


def test_imagej_and_ome_axes_and_pixel_sizes_are_read(tmp_path):
    stack = np.zeros((3, 2, 16, 20), np.uint16)
    _, meta = read_image_and_meta(_imagej(tmp_path / "a.tif", stack, "ZCYX"))
    assert meta.axes == "ZCYX" and meta.unit() == "micrometer"
    assert meta.spacing("ZYX") == (Z_STEP, PIXEL, PIXEL)
    assert ImageFile(tmp_path / "a.tif").axes == "ZCYX"
    tifffile.imwrite(tmp_path / "b.ome.tif", stack[:, 0], metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 3.0,
        "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm", "PhysicalSizeZUnit": "nm"})
    _, meta = read_image_and_meta(tmp_path / "b.ome.tif")
    assert meta.axes == "ZYX" and meta.spacing("ZYX") == (3.0, 0.5, 0.5)
    assert meta.unit() == "nanometer"
    tifffile.imwrite(tmp_path / "plain.tif", stack[:, 0])  # no metadata: axes guessed later
    assert read_image_and_meta(tmp_path / "plain.tif")[1] == ImageMeta()


def test_outputs_keep_axes_and_sizes_and_dtypes_imagej_cannot_hold(tmp_path):
    meta = ImageMeta("ZYX", {"Z": Z_STEP, "Y": PIXEL, "X": PIXEL}, dict.fromkeys("ZYX", "micrometer"))
    labels16 = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    labels32 = labels16.astype(np.uint32) + 70000
    probs = np.random.default_rng(0).random((3, 8, 8, 2), dtype=np.float32)  # ZYX + classes
    outputs = {tmp_path / "l16.tif": labels16, tmp_path / "l32.tif": labels32,
               tmp_path / "p.tif": probs, tmp_path / "l.ome.tif": labels16}
    metas = {k: meta.with_axes("ZYXC" if v.ndim == 4 else "ZYX") for k, v in outputs.items()}
    write_images(outputs, metas)
    assert _imagej_calibration(tmp_path / "l16.tif") == ("ZYX", Z_STEP, "micron", PIXEL, PIXEL)
    assert _imagej_calibration(tmp_path / "p.tif") == ("ZCYX", Z_STEP, "micron", PIXEL, PIXEL)
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), np.moveaxis(probs, -1, 1))
    for name, array in (("l32.tif", labels32), ("l.ome.tif", labels16)):
        back, back_meta = read_image_and_meta(tmp_path / name)
        np.testing.assert_array_equal(back, array)
        assert back_meta.axes == "ZYX", name
    for name in ("l.ome.tif", "l32.tif"):  # uint32 labels as OME-TIFF: Z spacing and unit kept
        back_meta = read_image_and_meta(tmp_path / name)[1]
        assert back_meta.spacing("ZYX") == (Z_STEP, PIXEL, PIXEL), name
        assert back_meta.unit() == "micrometer", name


@pytest.mark.parametrize("axes", ["ZYX", "ZCYX"])
def test_cli_labels_of_an_imagej_stack_overlay_it_in_fiji(tmp_path, model_files, axes):
    shape = (4, 2, 40, 48) if "C" in axes else (4, 40, 48)
    image = np.random.default_rng(1).integers(0, 4000, shape).astype(np.uint16)
    source = _imagej(tmp_path / "stack.tif", image, axes)
    before = source.read_bytes()
    model = model_files[2 if "C" in axes else 1]
    out, probs = tmp_path / "labels.tif", tmp_path / "probs.tif"
    assert main(["predict", str(model), str(source), str(out), "--probabilities",
                 str(probs)]) == 0
    assert _imagej_calibration(out) == ("ZYX", Z_STEP, "micron", PIXEL, PIXEL)
    assert _imagej_calibration(probs) == ("ZYX", Z_STEP, "micron", PIXEL, PIXEL)
    assert read_image(out).shape == (4, 40, 48) and source.read_bytes() == before


def test_cli_labels_of_an_ome_tiff_keep_its_pixel_sizes(tmp_path, model_files):
    image = np.random.default_rng(2).integers(0, 4000, (3, 40, 48)).astype(np.uint16)
    source = tmp_path / "cells.ome.tif"
    tifffile.imwrite(source, image, metadata={
        "axes": "ZYX", "PhysicalSizeX": PIXEL, "PhysicalSizeY": PIXEL, "PhysicalSizeZ": Z_STEP})
    for name in ("labels.tif", "labels.ome.tif"):
        assert main(["predict", str(model_files[1]), str(source), str(tmp_path / name)]) == 0
        _, meta = read_image_and_meta(tmp_path / name)
        assert meta.axes == "ZYX" and meta.spacing("ZYX") == (Z_STEP, PIXEL, PIXEL)
        assert meta.unit() == "micrometer"


def test_folders_keep_metadata_and_resume_with_imagej_outputs(tmp_path, model_files):
    from napari_unet.prediction.folders import predict_folder

    (tmp_path / "in").mkdir()
    image = np.random.default_rng(3).integers(0, 4000, (3, 2, 40, 48)).astype(np.uint16)
    _imagej(tmp_path / "in" / "a.tif", image, "ZCYX")
    rows = predict_folder(model_files[2], tmp_path / "in", tmp_path / "out")
    assert [r.status for r in rows] == ["done"], rows[0].error
    assert _imagej_calibration(tmp_path / "out" / "a.tif") == ("ZYX", Z_STEP, "micron", PIXEL,
                                                               PIXEL)
    again = predict_folder(model_files[2], tmp_path / "in", tmp_path / "out")
    assert [r.status for r in again] == ["skipped"]


def test_axes_a_file_gives_that_cannot_be_predicted_say_what_to_do(tmp_path, model_files,
                                                                   capsys):
    source = tmp_path / "odd.ome.tif"
    tifffile.imwrite(source, np.zeros((2, 3, 16, 16), np.uint8), metadata={"axes": "ZTYX"})
    assert main(["predict", str(model_files[1]), str(source), str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "'ZTYX'" in err and "--axes" in err
    assert main(["predict", str(model_files[1]), str(source), str(tmp_path / "o.tif"),
                 "--axes", "TZYX"]) == 0  # the user's word wins
    two = _imagej(tmp_path / "two.tif", np.zeros((2, 16, 16), np.uint16), "CYX")
    assert main(["predict", str(model_files[1]), str(two), str(tmp_path / "p.tif")]) == 2
    assert "has 2 channel(s) (axes CYX" in capsys.readouterr().err


def test_train_and_evaluate_take_the_axes_the_files_give(tmp_path, capsys):
    import json

    from napari_unet.model.files import load_model
    from napari_unet.samples.nuclei import make_nuclei

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for s in range(2):
        planes = [make_nuclei((48, 48), seed=10 * s + z) for z in range(3)]
        two = np.stack([np.stack([p[0], p[0] // 2]) for p in planes])  # ZCYX, 2 channels
        _imagej(images / f"s{s}.tif", two, "ZCYX")
        _imagej(masks / f"s{s}.tif", np.stack([p[1] for p in planes]).astype(np.uint16), "ZYX")
    model = tmp_path / "m.keras"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(model),
                 "--depth", "2", "--start-neurons", "4", "--epochs", "1", "--steps", "1",
                 "--patch-size", "32", "--batch-size", "2"]) == 0  # no --axes
    trained = load_model(model)
    assert trained.config.in_channels == 2
    # calibration measured with the files' pixel sizes
    assert trained.info["calibration"]["spacing"] == {"Z": Z_STEP, "Y": PIXEL, "X": PIXEL}
    capsys.readouterr()
    assert main(["evaluate", str(model), "--images", str(images), "--masks", str(masks)]) == 0
    assert len(json.loads(capsys.readouterr().out)["images"]) == 2


def test_cli_trains_a_3d_network_for_the_files_voxel_size_and_labels_a_stack(tmp_path):
    from napari_unet.model.files import load_model
    from napari_unet.samples.nuclei import make_nuclei_stack

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    image, labels = make_nuclei_stack((8, 48, 48), seed=4)
    _imagej(images / "s.tif", image, "ZYX")
    _imagej(masks / "s.tif", labels.astype(np.uint16), "ZYX")
    model = tmp_path / "v.keras"
    common = ["train", "--images", str(images), "--masks", str(masks), "--out", str(model),
              "--depth", "2", "--start-neurons", "4", "--epochs", "1", "--steps", "2",
              "--patch-size", "32", "--batch-size", "2"]
    assert main(common + ["--z-ratio", "3"]) == 2  # a 2D network has no voxel shape
    assert main(common + ["--3d"]) == 0
    trained = load_model(model)
    # Z steps 8x the pixel size: both levels leave Z alone
    assert trained.config.ndim == 3 and trained.config.z_unpooled_levels == 2
    assert trained.info["calibration"]["spacing"] == {"Z": Z_STEP, "Y": PIXEL, "X": PIXEL}
    further = ["train", "--images", str(images), "--masks", str(masks), "--model", str(model),
               "--out", str(tmp_path / "w.keras"), "--3d"]
    assert main(further) == 2  # --3d describes a new network, not one trained further
    out = tmp_path / "labels.tif"
    assert main(["predict", str(model), str(images / "s.tif"), str(out)]) == 0
    assert _imagej_calibration(out)[:2] == ("ZYX", Z_STEP)
    assert read_image(out).shape == image.shape
