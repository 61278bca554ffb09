import json
import os
import zipfile

import numpy as np
import pytest

from napari_unet.io import ModelFileError, load_model, read_metadata, save_model
from napari_unet.prediction import predict


def test_round_trip_gives_identical_predictions(trained_tiny, nuclei, tmp_path):
    path = save_model(trained_tiny, tmp_path / "m.keras")
    loaded = load_model(path)
    assert loaded.config == trained_tiny.config
    assert loaded.normalization == trained_tiny.normalization
    assert loaded.history == trained_tiny.history
    assert loaded.info["best_epoch"] == trained_tiny.info["best_epoch"]
    assert "napari_unet_version" in loaded.info
    np.testing.assert_array_equal(predict(loaded, nuclei[0]), predict(trained_tiny, nuclei[0]))
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temp files left


def test_save_is_atomic_when_writing_fails(trained_tiny, tmp_path, monkeypatch):
    path = save_model(trained_tiny, tmp_path / "m.keras")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(trained_tiny, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def test_save_errors(trained_tiny, tmp_path):
    with pytest.raises(ValueError, match="must end in '.keras'"):
        save_model(trained_tiny, tmp_path / "m.h5")
    with pytest.raises(ValueError, match="does not exist"):
        save_model(trained_tiny, tmp_path / "missing" / "m.keras")
    with pytest.raises(ValueError, match="UNetModel"):
        save_model(trained_tiny.keras_model, tmp_path / "m.keras")


def test_missing_corrupt_and_foreign_files(trained_tiny, tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(bad)
    good = save_model(trained_tiny, tmp_path / "good.keras")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError):
        load_model(truncated)
    foreign = tmp_path / "foreign.keras"
    trained_tiny.keras_model.save(foreign)
    with pytest.raises(ModelFileError, match="not saved by napari-unet"):
        load_model(foreign)
    h5 = tmp_path / "m.h5"
    h5.touch()
    with pytest.raises(ModelFileError, match="only loads"):
        load_model(h5)
    assert isinstance(ModelFileError("x"), ValueError)


def test_tampered_config_is_rejected(trained_tiny, tmp_path):
    path = save_model(trained_tiny, tmp_path / "m.keras")
    meta = read_metadata(path)
    meta["config"]["start_neurons"] = 32
    tampered = tmp_path / "t.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "napari_unet.json":
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="does not match its config"):
        load_model(tampered)
