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
