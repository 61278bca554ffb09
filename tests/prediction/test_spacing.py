"""The smallest object in physical units: an area per plane or a volume across Z, from the
file's own pixel sizes, on an anisotropic stack."""

import math

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.io.images import read_image
from napari_unet.io.metadata import ImageMeta
from napari_unet.model.files import save_model
from napari_unet.prediction.spacing import min_size_in_pixels
from napari_unet.samples.nuclei import make_nuclei_stack

ANISOTROPIC = ImageMeta("ZYX", {"Z": 2.0, "Y": 0.5, "X": 0.5}, dict.fromkeys("ZYX", "micrometer"))


def test_areas_per_plane_and_volumes_across_z_become_pixel_counts():
    assert min_size_in_pixels(10.0, ANISOTROPIC, "ZYX", linked=False) == 40  # 10 / 0.25 µm²
    assert min_size_in_pixels(10.0, ANISOTROPIC, "ZYX", linked=True) == 20  # 10 / 0.5 µm³
    assert min_size_in_pixels(10.0, ANISOTROPIC, "YX", linked=True) == 40  # no Z: planes
    with pytest.raises(ValueError, match="--min-size in pixels"):
        min_size_in_pixels(10.0, ImageMeta("ZYX"), "ZYX", linked=False)
    mixed = ImageMeta("ZYX", ANISOTROPIC.scale, {"Z": "millimeter", "Y": "micrometer",
                                                 "X": "micrometer"})
    with pytest.raises(ValueError, match="different units"):
        min_size_in_pixels(10.0, mixed, "ZYX", linked=True)


@pytest.mark.parametrize("link", [False, True])
def test_cli_min_physical_size_equals_the_pixel_count_of_the_file_s_spacing(tmp_path,
                                                                           trained_tiny, link):
    image, _ = make_nuclei_stack((6, 96, 96), seed=5)
    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, image, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"})
    model = str(save_model(trained_tiny, tmp_path / "m.keras"))
    extra = ["--link-planes"] if link else []

    def run(name, *options):
        assert main(["predict", model, str(source), str(tmp_path / name), *extra, *options]) == 0
        return read_image(tmp_path / name)

    every = run("all.tif", "--min-size", "0")
    sizes = np.bincount(every.ravel())[1:]
    sizes = sizes[sizes > 0]
    assert len(sizes) >= 2
    unit = 2.0 * 0.25 if link else 0.25  # µm³ per voxel, or µm² per pixel
    physical = float(np.median(sizes)) * unit
    by_units = run("units.tif", "--min-physical-size", str(physical))
    by_pixels = run("pixels.tif", "--min-size", str(math.ceil(physical / unit - 1e-9)))
    np.testing.assert_array_equal(by_units, by_pixels)
    assert 0 < len(np.unique(by_units)) - 1 < len(sizes)
    from napari_unet.labels.options import LabelOptions
    from napari_unet.prediction.folders import predict_folder

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "stack.tif").write_bytes(source.read_bytes())
    rows = predict_folder(trained_tiny, tmp_path / "in", tmp_path / "out",
                          LabelOptions(link_planes=link), min_physical_size=physical)
    assert rows[0].status == "done", rows[0].error
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "stack.tif"), by_pixels)


def test_min_physical_size_needs_pixel_sizes_and_excludes_min_size(tmp_path, random_tiny,
                                                                   capsys):
    source = tmp_path / "plain.tif"
    tifffile.imwrite(source, np.zeros((32, 32), np.uint16))
    model = str(save_model(random_tiny, tmp_path / "m.keras"))
    assert main(["predict", model, str(source), str(tmp_path / "o.tif"),
                 "--min-physical-size", "5"]) == 2
    assert "--min-size in pixels" in capsys.readouterr().err
    assert main(["predict", model, str(source), str(tmp_path / "o.tif"),
                 "--min-physical-size", "5", "--min-size", "3"]) == 2
    assert "not both" in capsys.readouterr().err


def _z_dumbbell(z_spacing: float = 2.0, separation: float = 15.0):
    """Two balls of radius 8 (in-plane pixels) whose centres lie ``separation`` apart along
    Z, sampled every ``z_spacing``: ``(truth (Z, Y, X), boundary probabilities)`` where the
    network calls both interior everywhere (one seed), as on a blurred Z stack."""
    zz, yy, xx = np.mgrid[:20, :32, :32]
    z = zz * z_spacing
    truth = np.zeros(zz.shape, np.int32)
    truth[(z - 12) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 <= 64] = 1
    truth[((z - 12 - separation) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 <= 64) & (truth == 0)] = 2
    probs = np.zeros(truth.shape + (3,), np.float32)
    probs[..., 0] = 1.0
    probs[truth > 0] = [0.0, 0.9, 0.1]
    return truth, probs


def test_linked_splits_measure_widths_with_the_z_spacing():
    """In voxels the dumbbell's neck looks as wide as its balls (Z is squeezed 2x), so it
    stays one object; with the spacing the neck is narrow and the two balls come apart."""
    from napari_unet.labels.decode import labels_from_probabilities
    from napari_unet.labels.metrics import evaluate
    from napari_unet.labels.options import LabelOptions
    from napari_unet.model.decoding import Decoding

    truth, probs = _z_dumbbell()
    voxels = LabelOptions(link_planes=True, split_ratio=0.7).filled(Decoding())
    physical = LabelOptions(link_planes=True, split_ratio=0.7,
                            spacing={"Z": 2.0, "Y": 0.5, "X": 0.5}).filled(Decoding())
    assert physical.sampling("ZYX") == (4.0, 1.0, 1.0) and voxels.sampling("ZYX") is None
    assert physical.sampling("YX") is None  # planes alone: square pixels
    assert labels_from_probabilities(probs, "ZYX", voxels, "boundary").max() == 1
    split = labels_from_probabilities(probs, "ZYX", LabelOptions(
        link_planes=True, split_ratio=0.7, spacing={"Z": 2.0}).filled(Decoding()), "boundary")
    assert split.max() == 2 and evaluate(split, truth)["ap@0.5"] == 1.0
    for bad in ({"Z": 0}, {"T": 1.0}, {"Z": float("nan")}, [1, 2]):
        with pytest.raises(ValueError, match="spacing"):
            LabelOptions(spacing=bad)


def test_split_distances_count_pixels_of_the_finest_axis_along_z_too():
    """Peaks 15 px apart (7.5 Z planes of 2 px): a split distance of 10 px keeps them apart
    with the spacing (5 planes), not in voxels (10 planes); 20 px merges them either way."""
    from napari_unet.labels.decode import split_touching_objects

    truth, _ = _z_dumbbell()
    mask = truth > 0
    assert split_touching_objects(mask, 10).max() == 1
    assert split_touching_objects(mask, 10, (2.0, 1.0, 1.0)).max() == 2
    assert split_touching_objects(mask, 20, (2.0, 1.0, 1.0)).max() == 1


def test_split_distances_with_a_spacing_do_not_cut_plateaus_into_slices():
    """Flat-topped distance transforms (a slab, true nuclei) keep one peak per plateau."""
    from napari_unet.labels.decode import split_touching_objects
    from napari_unet.samples.nuclei import make_nuclei_stack

    slab = np.zeros((6, 12, 12), bool)
    slab[1:5, 1:11, 1:11] = True
    assert split_touching_objects(slab, 4, (4.0, 1.0, 1.0)).max() == 1
    zz, yy, xx = np.mgrid[:30, :40, :60]
    spheres = (((2 * zz - 30) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 144)
               | ((2 * zz - 30) ** 2 + (yy - 20) ** 2 + (xx - 40) ** 2 <= 144))
    assert split_touching_objects(spheres, 4, (2.0, 1.0, 1.0)).max() == 2
    _, truth = make_nuclei_stack((12, 96, 96), seed=1)
    n = len(np.unique(truth)) - 1
    assert abs(int(split_touching_objects(truth > 0, 4, (4.0, 1.0, 1.0)).max()) - n) <= 2


def test_calibration_splits_seeds_with_the_training_images_spacing():
    """Chosen on the Z dumbbells, neck splits fit only when measured with the spacing."""
    from napari_unet import UNetConfig, UNetModel
    from napari_unet.training.decoding_search import calibrate

    truth, probs = _z_dumbbell()
    model = UNetModel.new(UNetConfig(depth=1, start_neurons=2, n_classes=3), target="boundary")
    voxels = calibrate(model, [probs] * 2, [truth] * 2, None)
    physical = calibrate(model, [probs] * 2, [truth] * 2, None, sampling=(2.0, 1.0, 1.0))
    assert physical.score == 1.0 and physical.decoding.split_ratio > 0
    assert voxels.score < 1.0
    with pytest.raises(ValueError, match="one per item"):
        calibrate(model, [probs] * 2, [truth] * 2, None, sampling=[(2.0, 1.0, 1.0)])


def test_the_file_s_pixel_sizes_become_the_labels_spacing():
    from napari_unet.labels.options import LabelOptions
    from napari_unet.prediction.spacing import with_file_spacing

    meta = ImageMeta(axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.5},
                     units={"Z": "micrometer", "Y": "micrometer", "X": "micrometer"})
    options = with_file_spacing(LabelOptions(link_planes=True), meta, "ZYX", None)
    assert dict(options.spacing) == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    mine = LabelOptions(spacing={"Z": 1.0})  # the user's own spacing wins
    assert dict(with_file_spacing(mine, meta, "ZYX", None).spacing) == {"Z": 1.0}
    mixed = ImageMeta(axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.5},
                      units={"Z": "millimeter", "Y": "micrometer", "X": "micrometer"})
    assert with_file_spacing(LabelOptions(), mixed, "ZYX", None).spacing is None
    flat = ImageMeta(axes="ZYX", scale={"Z": 0.0, "Y": 0.5, "X": 0.5})  # ImageJ spacing 0
    assert flat.pixel_sizes() is None
    assert with_file_spacing(LabelOptions(), flat, "ZYX", None).spacing is None


def test_a_napari_layer_s_scale_is_the_run_widget_s_spacing():
    from napari.layers import Image

    from napari_unet._widgets._layers import layer_spacing

    stack = Image(np.zeros((4, 16, 16), np.float32), scale=(2.0, 0.5, 0.5))
    assert layer_spacing(stack, "ZYX") == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    channels = Image(np.zeros((3, 4, 16, 16), np.float32), scale=(1, 3.0, 0.5, 0.5))
    assert layer_spacing(channels, "CZYX") == {"Z": 3.0, "Y": 0.5, "X": 0.5}
    rgb = Image(np.zeros((16, 16, 3), np.uint8), rgb=True, scale=(0.5, 0.5))
    assert layer_spacing(rgb, "YXC") == {"Y": 0.5, "X": 0.5}
