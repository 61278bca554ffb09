"""Folder prediction: one model load, same results as single predictions, resumable,
never writing into the input folder, a CSV summary, failures recorded."""

import csv

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.labels.options import LabelOptions
from napari_unet.model.files import save_model
from napari_unet.prediction.api import segment
from napari_unet.prediction.folders import SUMMARY, list_images, predict_folder
from napari_unet.samples.nuclei import make_nuclei


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        tifffile.imwrite(images / f"cell{i}.tif", make_nuclei((64, 80), seed=20 + i)[0])
    return images


def test_three_files_equal_three_single_predictions(folder, tmp_path, trained_tiny):
    out = tmp_path / "labels"
    results = predict_folder(trained_tiny, folder, out, LabelOptions(min_size=5))
    assert [r.status for r in results] == ["done"] * 3
    for i, result in enumerate(results):
        expected = segment(trained_tiny, tifffile.imread(folder / f"cell{i}.tif"), min_size=5)
        written = tifffile.imread(out / f"cell{i}.tif")
        np.testing.assert_array_equal(written, expected)
        assert result.objects == int(expected.max()) and result.index == i + 1
        assert result.foreground == pytest.approx(np.count_nonzero(expected) / expected.size, abs=1e-6)
    with open(out / SUMMARY, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["cell0.tif", "cell1.tif", "cell2.tif"]
    assert {r["status"] for r in rows} == {"done"} and all(float(r["seconds"]) > 0 for r in rows)


def test_a_second_run_skips_finished_files_and_redoes_missing_ones(folder, tmp_path, trained_tiny):
    out = tmp_path / "labels"
    predict_folder(trained_tiny, folder, out)
    (out / "cell1.tif").unlink()
    before = (out / "cell0.tif").stat().st_mtime_ns
    results = predict_folder(trained_tiny, folder, out)
    assert [r.status for r in results] == ["skipped", "done", "skipped"]
    assert (out / "cell0.tif").stat().st_mtime_ns == before
    with open(out / SUMMARY, newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert rows["cell0.tif"]["status"] == "skipped (done earlier)" and rows["cell0.tif"]["objects"]
    overwritten = predict_folder(trained_tiny, folder, out, overwrite=True)
    assert [r.status for r in overwritten] == ["done"] * 3


def test_refuses_to_write_into_the_input_folder(folder, trained_tiny):
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ValueError, match="is the input folder"):
        predict_folder(trained_tiny, folder, folder)
    with pytest.raises(ValueError, match="is the input folder"):
        predict_folder(trained_tiny, folder, folder.parent / "x", probabilities_dir=folder / ".")
    assert sorted(p.name for p in folder.iterdir()) == before


def test_name_clashes_and_empty_folders_are_refused_before_any_work(tmp_path, trained_tiny):
    images = tmp_path / "in"
    images.mkdir()
    with pytest.raises(ValueError, match="No images"):
        predict_folder(trained_tiny, images, tmp_path / "out")
    tifffile.imwrite(images / "a.tif", np.zeros((32, 32), np.uint8))
    tifffile.imwrite(images / "a.tiff", np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="would both be written as 'a.tif'"):
        predict_folder(trained_tiny, images, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_corrupt_file_is_reported_and_the_others_are_done(folder, tmp_path, trained_tiny):
    (folder / "broken.tif").write_bytes(b"not a tiff")
    results = predict_folder(trained_tiny, folder, tmp_path / "labels")
    status = {r.file: r.status for r in results}
    assert status == {"broken.tif": "failed", "cell0.tif": "done", "cell1.tif": "done",
                      "cell2.tif": "done"}
    assert "corrupt" in [r for r in results if r.file == "broken.tif"][0].error
    assert not (tmp_path / "labels" / "broken.tif").exists()


def test_probabilities_go_to_their_own_folder(folder, tmp_path, trained_tiny):
    predict_folder(trained_tiny, folder, tmp_path / "labels", probabilities_dir=tmp_path / "probs")
    probs = tifffile.imread(tmp_path / "probs" / "cell0.tif")
    assert probs.dtype == np.float32 and probs.shape == (64, 80, 3)  # a boundary model's classes
    with pytest.raises(ValueError, match="separate folders"):
        predict_folder(trained_tiny, folder, tmp_path / "labels", probabilities_dir=tmp_path / "labels")


def test_list_images_takes_tiff_png_and_zarr_but_not_subfolders(tmp_path):
    for name in ("b.png", "a.tif", "c.ome.zarr", "notes.txt", ".hidden.tif"):
        path = tmp_path / name
        path.mkdir() if name.endswith("zarr") else path.write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.tif", "b.png", "c.ome.zarr"]


def test_command_line_folder_mode(folder, tmp_path, trained_tiny, capsys):
    model = save_model(trained_tiny, tmp_path / "m.keras")
    out = tmp_path / "cli_labels"
    assert main(["predict", str(model), str(folder), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cell0.tif", "cell1.tif", "cell2.tif", SUMMARY]
    assert "3 of 3 files" in capsys.readouterr().out
    (folder / "broken.png").write_bytes(b"xx")
    assert main(["predict", str(model), str(folder), str(out)]) == 2
    assert "1 of 4 files failed" in capsys.readouterr().err
    assert main(["predict", str(model), str(folder), str(folder)]) == 2
    assert "is the input folder" in capsys.readouterr().err


def test_zarr_images_in_a_folder_are_predicted_block_by_block(tmp_path, trained_tiny):
    zarr = pytest.importorskip("zarr")
    images = tmp_path / "in"
    images.mkdir()
    image = make_nuclei((64, 80), seed=30)[0]
    zarr.save_array(str(images / "big.ome.zarr"), image)
    results = predict_folder(trained_tiny, images, tmp_path / "out")
    assert results[0].status == "done", results[0].error
    written = np.asarray(zarr.open_array(str(tmp_path / "out" / "big.zarr"), mode="r"))
    assert written.shape == image.shape and results[0].objects == int(written.max())


def test_a_truncated_or_empty_output_is_done_again_not_skipped(folder, tmp_path, trained_tiny):
    out = tmp_path / "labels"
    predict_folder(trained_tiny, folder, out)
    (out / "cell0.tif").write_bytes(b"")
    whole = (out / "cell1.tif").read_bytes()
    (out / "cell1.tif").write_bytes(whole[:100])
    tifffile.imwrite(out / "cell2.tif", np.zeros((5, 5), np.uint8))  # readable, wrong shape
    results = predict_folder(trained_tiny, folder, out)
    assert [r.status for r in results] == ["done"] * 3
    assert tifffile.imread(out / "cell1.tif").shape == (64, 80)
    assert [r.status for r in predict_folder(trained_tiny, folder, out)] == ["skipped"] * 3


def test_an_unwritable_output_folder_is_refused_before_the_model_is_loaded(folder, tmp_path,
                                                                            monkeypatch):
    """(As root every folder is writable: the check is shown with os.access answering as
    it does for a user without write permission.)"""
    import os

    from napari_unet.model import files

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and str(p) != str(locked))
    monkeypatch.setattr(files, "load_model", lambda path: pytest.fail("the model was loaded"))
    with pytest.raises(ValueError, match="is not writable"):
        predict_folder(str(tmp_path / "model.keras"), folder, locked / "out")
    with pytest.raises(ValueError, match="is not writable"):
        predict_folder(str(tmp_path / "model.keras"), folder, locked)


def test_run_options_are_checked_before_any_file_is_written(folder, tmp_path, trained_tiny):
    with pytest.raises(ValueError, match="tile_size must be a multiple"):
        predict_folder(trained_tiny, folder, tmp_path / "out", tile_size=17)
    assert not (tmp_path / "out").exists()
