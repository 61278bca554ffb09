"""BioImage Model Zoo packages: export validates with bioimageio.spec, bioimageio.core
reproduces its test output, and an exported package imports back to the same model."""

import os
import zipfile

import numpy as np
import pytest

from napari_unet.bioimageio.export import export_bioimageio, import_bioimageio
from napari_unet.cli import main
from napari_unet.model.files import save_model
from napari_unet.prediction.api import predict, segment
from napari_unet.samples.nuclei import make_nuclei

bioimageio_core = pytest.importorskip("bioimageio.core")


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


def test_the_packages_test_output_is_what_napari_unet_predicts(package, trained_tiny):
    with zipfile.ZipFile(package) as zf:
        with zf.open("test_input.npy") as f:
            raw = np.load(f)
        with zf.open("test_output.npy") as f:
            expected = np.load(f)
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
