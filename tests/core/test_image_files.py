"""Image files: TIFF and PNG round trips, clear refusals, atomic writes."""

import numpy as np
import pytest

from napari_unet.image_files import check_image_output, list_pairs, read_image, write_image


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
