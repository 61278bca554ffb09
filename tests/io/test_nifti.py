"""NIfTI volumes: read with their zooms in the engine's ZYX order, labels written with the
input's affine and header, through the CLI and folder mode."""

import sys

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.io.images import ImageFile, read_image_and_meta
from napari_unet.model.config import UNetConfig
from napari_unet.model.files import save_model
from napari_unet.model.unet import UNetModel

nib = pytest.importorskip("nibabel")

ZOOMS = (0.8, 0.7, 3.0)  # mm: fine in-plane voxels, thick slices


def _volume(path, shape=(40, 36, 5), seed=0):
    """A CT-like int16 volume (x, y, z) with a rotated, shifted affine in sform and qform."""
    data = np.random.default_rng(seed).integers(-200, 900, shape).astype(np.int16)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.array([[c * ZOOMS[0], -s * ZOOMS[1], 0, -20.5], [s * ZOOMS[0], c * ZOOMS[1], 0, 11],
                       [0, 0, ZOOMS[2], -7.25], [0, 0, 0, 1]])
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    nib.save(image, str(path))
    return path, data


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    unet = UNetModel.new(UNetConfig(depth=2, start_neurons=4))
    return unet, save_model(unet, tmp_path_factory.mktemp("m") / "m.keras")


def test_voxels_are_read_as_zyx_with_their_zooms(tmp_path):
    path, data = _volume(tmp_path / "ct.nii.gz")
    array, meta = read_image_and_meta(path)
    assert array.shape == (5, 36, 40) and meta.axes == "ZYX"
    np.testing.assert_array_equal(array[4, 3, 2], data[2, 3, 4])  # array[z, y, x] == nifti[x, y, z]
    np.testing.assert_allclose(meta.spacing("ZYX"), ZOOMS[::-1], rtol=1e-6)
    assert meta.unit() == "millimeter"
    header = ImageFile(path)
    assert header.shape == (5, 36, 40) and header.axes == "ZYX" and header.dtype == np.int16


def test_cli_labels_have_the_identical_affine_and_the_input_s_voxels(tmp_path, model):
    from napari_unet.prediction.api import segment

    unet, model_file = model
    path, data = _volume(tmp_path / "ct.nii.gz")
    before = path.read_bytes()
    out, probs = tmp_path / "ct_labels.nii.gz", tmp_path / "ct_probs.nii"
    assert main(["predict", str(model_file), str(path), str(out), "--probabilities",
                 str(probs), "--semantic"]) == 0
    source, labels = nib.load(str(path)), nib.load(str(out))
    np.testing.assert_array_equal(labels.affine, source.affine)
    for form in ("qform", "sform"):
        matrix, code = getattr(labels, f"get_{form}")(coded=True)
        np.testing.assert_array_equal(matrix, getattr(source, f"get_{form}")())
        assert code == getattr(source, f"get_{form}")(coded=True)[1]
    assert labels.shape == data.shape and labels.header.get_zooms() == source.header.get_zooms()
    assert labels.get_data_dtype().kind == "u" and labels.header.get_intent()[0] == "label"
    expected = segment(unet, data.transpose(), instances=False).transpose()
    np.testing.assert_array_equal(np.asanyarray(labels.dataobj), expected)
    assert nib.load(str(probs)).get_data_dtype() == np.float32
    assert path.read_bytes() == before  # the input is never touched


def test_folders_of_volumes_give_volumes(tmp_path, model):
    from napari_unet.prediction.folders import predict_folder

    (tmp_path / "in").mkdir()
    _volume(tmp_path / "in" / "a.nii.gz", seed=1)
    _volume(tmp_path / "in" / "b.nii", seed=2)
    rows = predict_folder(model[0], tmp_path / "in", tmp_path / "out")
    assert [(r.output, r.status) for r in rows] == [("a.nii.gz", "done"), ("b.nii", "done")]
    assert nib.load(str(tmp_path / "out" / "a.nii.gz")).shape == (40, 36, 5)
    again = predict_folder(model[0], tmp_path / "in", tmp_path / "out")
    assert [r.status for r in again] == ["skipped", "skipped"]


def test_without_nibabel_the_error_says_what_to_install(tmp_path, model, monkeypatch, capsys):
    path, _ = _volume(tmp_path / "ct.nii.gz")
    monkeypatch.setitem(sys.modules, "nibabel", None)
    assert main(["predict", str(model[1]), str(path), str(tmp_path / "o.nii.gz")]) == 2
    assert "pip install napari-unet[nifti]" in capsys.readouterr().err
