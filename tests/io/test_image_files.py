"""Image files: TIFF and PNG round trips, clear refusals, atomic writes."""

import numpy as np
import pytest

from napari_unet.io.images import (
    check_image_output,
    list_pairs,
    read_image,
    write_image,
)


def test_round_trips(tmp_path):
    labels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    for name in ("a.tif", "a.png"):
        np.testing.assert_array_equal(read_image(write_image(tmp_path / name, labels)), labels)
    probs = np.random.default_rng(0).random((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "p.tif", probs)), probs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.tif", "p.tif"]


def test_refusals_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="write a .tif"):
        write_image(tmp_path / "p.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=".tif, .tiff or .png"):
        check_image_output(tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="is a folder"):
        read_image(tmp_path)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.tif"):
        read_image(tmp_path / "empty.tif")
    assert not (tmp_path / "p.png").exists()


def test_pairs_are_matched_by_name(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    for name in ("b", "a"):
        write_image(tmp_path / "i" / f"{name}.tif", np.zeros((4, 4), np.uint8))
        write_image(tmp_path / "m" / f"{name}.png", np.zeros((4, 4), np.uint8))
    assert [(i.name, m.name) for i, m in list_pairs(tmp_path / "i", tmp_path / "m")] == [
        ("a.tif", "a.png"), ("b.tif", "b.png")]
    (tmp_path / "m" / "b.png").unlink()
    with pytest.raises(ValueError, match="No mask for image"):
        list_pairs(tmp_path / "i", tmp_path / "m")


def test_training_folders_are_read_one_file_at_a_time_when_needed(tmp_path, monkeypatch):
    import napari_unet.io.images as files
    from napari_unet.model.config import UNetConfig
    from napari_unet.samples.nuclei import make_nuclei
    from napari_unet.training.job import train

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for s, suffix in ((0, ".tif"), (1, ".png")):
        image, labels = make_nuclei((48, 64), seed=s)
        write_image(tmp_path / "images" / f"c{s}{suffix}", image)
        write_image(tmp_path / "masks" / f"c{s}.png", labels.astype(np.uint8))
    reads = []
    real = files.read_image
    monkeypatch.setattr(files, "read_image", lambda path: reads.append(path) or real(path))
    images, masks, names = files.read_training_folder(tmp_path / "images", tmp_path / "masks")
    assert reads == [] and names == ["c0.tif", "c1.png"]  # listed, headers only
    assert images[0].shape == (48, 64) and images[1].dtype == np.uint16 and masks[0].ndim == 2
    np.testing.assert_array_equal(np.asarray(images[1]), real(tmp_path / "images" / "c1.png"))
    reads.clear()
    train(images, masks, UNetConfig(depth=1, start_neurons=4), epochs=1, steps_per_epoch=1,
          patch_size=32, batch_size=2, verbose=False, calibrate=False)
    assert reads  # read when training prepared them
    (tmp_path / "images" / "c0.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="Could not read"):
        files.read_training_folder(tmp_path / "images", tmp_path / "masks")
