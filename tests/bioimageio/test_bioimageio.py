"""BioImage Model Zoo packages: export validates with bioimageio.spec, bioimageio.core
reproduces its test output, and an exported package imports back to the same model."""

import os
import zipfile

import numpy as np
import pytest

from napari_unet.backend.runtime import load_keras
from napari_unet.bioimageio.export import export_bioimageio, import_bioimageio
from napari_unet.cli import main
from napari_unet.model.files import save_model
from napari_unet.prediction.api import predict, segment
from napari_unet.samples.nuclei import make_nuclei

bioimageio_core = pytest.importorskip("bioimageio.core")


@pytest.fixture(autouse=True)
def _keep_keras_backend(monkeypatch):
    """bioimageio.core sets KERAS_BACKEND (to "torch" unless the variable was set) when it
    first runs a Keras model, and napari-unet reads that variable to know its backend:
    keep it as it was, for the packages exported after and for the tests after these."""
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))


@pytest.fixture(scope="module")
def package(trained_tiny, tmp_path_factory):
    return export_bioimageio(trained_tiny, tmp_path_factory.mktemp("zoo") / "tiny.zip",
                             name="tiny nuclei U-Net", authors=["A. Tester"])


def test_package_validates_and_bioimageio_core_reproduces_its_test_output(package, tmp_path,
                                                                         monkeypatch):
    from bioimageio.spec import load_description

    descr = load_description(package)
    assert descr.validation_summary.status in ("valid-format", "passed"), descr.validation_summary
    assert descr.weights.keras_v3 is not None and descr.name == "tiny nuclei U-Net"
    assert str(descr.cite[0].doi) == "10.1007/978-3-319-24574-4_28"
    tensorflow = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
    assert (descr.weights.tensorflow_saved_model_bundle is not None) == tensorflow
    monkeypatch.chdir(tmp_path)  # bioimageio.core unzips the SavedModel into the working dir
    summary = bioimageio_core.test_model(package)
    assert summary.status == "passed", summary.format()
    reproduced = [d.name for d in summary.details if d.name.startswith("Reproduce test outputs")]
    assert len(reproduced) == (2 if tensorflow else 1)
    assert any("tensorflow_saved_model_bundle" in n for n in reproduced) == tensorflow


def _test_tensors(package):
    """The package's test input and expected output arrays."""
    with zipfile.ZipFile(package) as zf:
        with zf.open("test_input.npy") as f:
            raw = np.load(f)
        with zf.open("test_output.npy") as f:
            return raw, np.load(f)


def test_the_packages_test_output_is_what_napari_unet_predicts(package, trained_tiny):
    raw, expected = _test_tensors(package)
    ours = predict(trained_tiny, raw[0, ..., 0])
    np.testing.assert_allclose(expected[0], ours.reshape(expected.shape[1:]), atol=1e-3)


def test_exported_then_imported_model_gives_the_same_labels(package, trained_tiny):
    image = make_nuclei((96, 96), seed=40)[0]
    imported = import_bioimageio(package)
    assert imported.threshold == trained_tiny.threshold
    assert imported.class_names == trained_tiny.class_names
    np.testing.assert_array_equal(segment(imported, image), segment(trained_tiny, image))
    np.testing.assert_array_equal(segment(str(package), image), segment(trained_tiny, image))


def test_bad_destinations_and_foreign_packages_are_refused(package, trained_tiny, tmp_path):
    with pytest.raises(ValueError, match=r"\.zip"):
        export_bioimageio(trained_tiny, tmp_path / "model.keras")
    with pytest.raises(ValueError, match="exists"):
        export_bioimageio(trained_tiny, package)
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("rdf.yaml", "type: model\n")
    with pytest.raises(ValueError, match="not exported by napari-unet"):
        import_bioimageio(foreign)
    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a bioimage.io package"):
        import_bioimageio(tmp_path / "junk.zip")


def test_command_line_export_then_predict_with_the_package(trained_tiny, tmp_path, capsys):
    import tifffile

    model = save_model(trained_tiny, tmp_path / "m.keras")
    out = tmp_path / "m.zip"
    assert main(["export", str(model), str(out), "--author", "A. Tester"]) == 0
    assert "bioimage.io model package" in capsys.readouterr().out
    assert main(["export", str(model), str(out)]) == 2  # exists, no --overwrite
    image = tmp_path / "cell.tif"
    tifffile.imwrite(image, make_nuclei((64, 64), seed=41)[0])
    assert main(["predict", str(out), str(image), str(tmp_path / "labels.tif")]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels.tif"),
                                  segment(trained_tiny, tifffile.imread(image)))


# ------------------------------------------------------------------ 3D networks (z in the axes)
@pytest.fixture(scope="module")
def volume_model():
    """An untrained anisotropic 3D U-Net (Z pooled on one of its two levels: steps 2, 4, 4)
    whose calibration recorded a 3 x 1 x 1 voxel size."""
    from napari_unet import UNetModel
    from napari_unet.model.config import UNetConfig

    config = UNetConfig.for_spacing((3, 1, 1), depth=2, start_neurons=2)
    return UNetModel.new(config, info={"calibration": {"spacing": {"Z": 3.0, "Y": 1.0, "X": 1.0}}})


@pytest.fixture(scope="module")
def volume_package(volume_model, tmp_path_factory):
    return export_bioimageio(volume_model, tmp_path_factory.mktemp("zoo3d") / "volume.zip")


def test_a_3d_package_has_z_with_its_own_step_and_halo_and_bioimageio_core_runs_it(
        volume_package, volume_model, tmp_path, monkeypatch):
    from bioimageio.spec import load_description

    from napari_unet.model.costs import halos

    descr = load_description(volume_package)
    assert descr.validation_summary.status in ("valid-format", "passed"), descr.validation_summary
    config = volume_model.config
    (raw,), (out,) = descr.inputs, descr.outputs
    assert [str(a.id) for a in raw.axes] == ["batch", "z", "y", "x", "channel"]
    assert [str(a.id) for a in out.axes] == ["batch", "z", "y", "x", "channel"]
    assert config.size_multiples == (2, 4, 4) and halos(config)[0] < halos(config)[1]
    for axis, step, halo in zip(raw.axes[1:4], config.size_multiples, halos(config)):
        assert (axis.size.step, axis.size.min) == (step, 2 * halo + step)
    assert [a.halo for a in out.axes[1:4]] == list(halos(config))
    assert [a.scale for a in out.axes[1:4]] == [3.0, 1.0, 1.0] == [a.scale for a in raw.axes[1:4]]
    scale_range = [p for p in raw.preprocessing if p.id == "scale_range"][0]
    assert [str(a) for a in scale_range.kwargs.axes] == ["z", "y", "x"]
    assert "3d" in descr.tags and "2d" not in descr.tags
    backend = load_keras().backend.backend()  # the backend Keras runs
    assert descr.weights.keras_v3.backend[0] == backend
    assert (descr.weights.tensorflow_saved_model_bundle is not None) == (backend == "tensorflow")
    with zipfile.ZipFile(volume_package) as zf, zf.open("test_input.npy") as f:
        shape = np.load(f).shape
    assert shape[0] == 1 and shape[-1] == 1 and len(shape) == 5
    assert all(n >= a.size.min and n % a.size.step == 0 for n, a in zip(shape[1:4], raw.axes[1:4]))
    monkeypatch.chdir(tmp_path)  # bioimageio.core unzips the SavedModel into the working dir
    summary = bioimageio_core.test_model(volume_package)
    assert summary.status == "passed", summary.format()


def test_a_3d_packages_test_output_is_what_napari_unet_predicts(volume_package, volume_model):
    raw, expected = _test_tensors(volume_package)
    ours = predict(volume_model, raw[0, ..., 0], axes="ZYX")
    np.testing.assert_allclose(expected[0], ours.reshape(expected.shape[1:]), atol=1e-3)
    assert import_bioimageio(volume_package).config == volume_model.config


def test_test_images_of_the_wrong_shape_are_refused(volume_model, trained_tiny, tmp_path):
    destination = tmp_path / "m.zip"
    for model, image, match in [
            (volume_model, np.zeros((64, 64)), "ZYX or ZYXC with 1 channel"),
            (volume_model, np.zeros((26, 68, 68, 2)), "ZYX or ZYXC with 1 channel"),
            (volume_model, np.zeros((4, 68, 68)), r"at least 26 x 68 x 68 voxels"),
            (trained_tiny, np.zeros((26, 68, 68)), "YX or YXC with 1 channel.*2D network"),
            (trained_tiny, np.zeros((2, 26, 68, 68)), "YX or YXC"),
            (trained_tiny, np.zeros((20, 20)), "at least")]:
        with pytest.raises(ValueError, match=match):
            export_bioimageio(model, destination, test_image=image)
        assert not destination.exists()
