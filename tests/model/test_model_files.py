import json
import os
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from napari_unet.model.config import UNetConfig
from napari_unet.model.costs import count_parameters
from napari_unet.model.files import (
    ModelFileError,
    load_model,
    read_metadata,
    save_model,
)
from napari_unet.prediction.api import predict


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
    with pytest.raises(ValueError, match="disk full"):
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


# ----------------------------------------------------------------------------- hardening
def _rewrite(src, dst, replace, compress=zipfile.ZIP_STORED):
    """Copy zip ``src`` to ``dst``; ``replace`` maps entry name -> new bytes (None drops it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = replace.get(item.filename, zin.read(item))
            if data is not None:
                zout.writestr(item.filename, data, compress_type=compress)
        for name, data in replace.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data, compress_type=compress)
    return dst


def _raises_naming(path, func):
    with pytest.raises(ModelFileError) as info:
        func(path)
    assert str(path) in str(info.value), str(info.value)
    return str(info.value)


def test_oversized_entries_are_refused_before_reading(random_tiny, tmp_path):
    good = save_model(random_tiny, tmp_path / "good.keras")
    meta = json.loads(zipfile.ZipFile(good).read("napari_unet.json"))
    padded = json.dumps(meta).encode() + b" " * (17 << 20)  # valid JSON, 17 MiB
    bomb = _rewrite(good, tmp_path / "bomb.keras", {"napari_unet.json": padded},
                    zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 1 << 20
    for func in (read_metadata, load_model):
        assert "napari_unet.json" in _raises_naming(bomb, func)
    weights = zipfile.ZipFile(good).read("model.weights.h5") + bytes(8 << 20)
    fat = _rewrite(good, tmp_path / "fat.keras", {"model.weights.h5": weights},
                   zipfile.ZIP_DEFLATED)
    assert "model.weights.h5" in _raises_naming(fat, load_model)
    extra = _rewrite(good, tmp_path / "extra.keras", {"assets/x.bin": b"x"})
    assert "assets/x.bin" in _raises_naming(extra, load_model)
    # a config with ~1.9 M parameters and all-zero "weights" that deflate 1000x
    meta["config"]["start_neurons"] = 64
    zeros = bytes(4 * count_parameters(UNetConfig.from_dict(meta["config"])))
    shrunk = _rewrite(good, tmp_path / "shrunk.keras", {"model.weights.h5": zeros,
                      "napari_unet.json": json.dumps(meta).encode()}, zipfile.ZIP_DEFLATED)
    assert "decompression bomb" in _raises_naming(shrunk, read_metadata)
    # a central directory that under-declares the metadata size: bounded reads catch it
    data = bytearray(good.read_bytes())
    entry = data.index(b"PK\x01\x02")
    while not data[entry + 46:].startswith(b"napari_unet.json"):
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24:entry + 28] = (10).to_bytes(4, "little")
    liar = tmp_path / "liar.keras"
    liar.write_bytes(bytes(data))
    for func in (read_metadata, load_model):
        _raises_naming(liar, func)


def test_special_files_are_refused_without_reading(tmp_path):
    fifo = tmp_path / "fifo.keras"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.keras"
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero):
        for func in (read_metadata, load_model):
            assert "not a regular file" in _raises_naming(path, func)
    folder = tmp_path / "m.keras"
    folder.mkdir()
    assert "folder" in _raises_naming(folder, load_model)


def _tamper_layer(cfg, name, change):
    for layer in cfg["config"]["layers"]:
        if layer["name"] == name:
            change(layer["config"])
            return cfg
    raise AssertionError(name)


TAMPERS = {
    "linear output": ("output", lambda c: c.update(activation="linear")),
    "dropped activation": ("output", lambda c: c.pop("activation")),
    "dilated conv": ("enc1_conv1", lambda c: c.update(dilation_rate=[2, 2])),
    "dropout rate": ("dec1_drop", lambda c: c.update(rate=0.9)),
    "strided pool": ("enc1_pool", lambda c: c.update(strides=[1, 1], padding="same")),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_network_is_rejected(random_tiny, tmp_path, tamper):
    good = save_model(random_tiny, tmp_path / "good.keras")
    cfg = json.loads(zipfile.ZipFile(good).read("config.json"))
    name, change = TAMPERS[tamper]
    _tamper_layer(cfg, name, change)
    bad = _rewrite(good, tmp_path / "bad.keras", {"config.json": json.dumps(cfg).encode()})
    message = _raises_naming(bad, load_model)
    assert "does not match its config" in message and name in message


def test_rewired_network_is_rejected(random_tiny, tmp_path):
    good = save_model(random_tiny, tmp_path / "good.keras")
    cfg = json.loads(zipfile.ZipFile(good).read("config.json"))
    concat = next(la for la in cfg["config"]["layers"] if la["name"] == "dec1_concat")
    concat["inbound_nodes"][0]["args"][0].reverse()  # [skip, upsampled]: same shapes, new wiring
    bad = _rewrite(good, tmp_path / "bad.keras", {"config.json": json.dumps(cfg).encode()})
    assert "dec1_concat" in _raises_naming(bad, load_model)


DROP = object()


def _meta_with(meta, **changes):
    meta = dict(meta, **changes)
    return {k: v for k, v in meta.items() if v is not DROP}


BAD_METADATA = {
    "config list": dict(config=[]),
    "config key": dict(config={"depth": "two"}),
    "history number": dict(history=5),
    "history text": dict(history={"loss": "abc"}),
    "history bool": dict(history={"loss": [True]}),
    "info list": dict(info=[1]),
    "class_names number": dict(class_names=7),
    "class_names ints": dict(class_names=[1, 2]),
    "threshold text": dict(threshold="x"),
    "threshold high": dict(threshold=2.0),
    "split_distance negative": dict(split_distance=-3),
    "split_distance text": dict(split_distance="8"),
    "normalization text": dict(normalization={"low": "a"}),
    "normalization key": dict(normalization={"lo": 1.0}),
    "normalization list": dict(normalization=[1]),
    "format missing": dict(format=DROP),
    "version missing": dict(format_version=DROP),
    "version text": dict(format_version="1"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA) + ["deep", "utf8", "not object", "huge int"])
def test_malformed_metadata_is_a_model_file_error(random_tiny, tmp_path, case):
    good = save_model(random_tiny, tmp_path / "good.keras")
    meta = read_metadata(good)
    raw = {"deep": b"[" * 100_000 + b"]" * 100_000, "utf8": b'{"format": "\xff\xfe"}',
           "not object": b"[]", "huge int": b'{"format_version": ' + b"9" * 5000 + b"}"}.get(case)
    if raw is None:
        raw = json.dumps(_meta_with(meta, **BAD_METADATA[case])).encode()
    bad = _rewrite(good, tmp_path / "bad.keras", {"napari_unet.json": raw})
    for func in (read_metadata, load_model):
        _raises_naming(bad, func)


def test_newer_format_version_asks_to_upgrade(random_tiny, tmp_path):
    good = save_model(random_tiny, tmp_path / "good.keras")
    meta = dict(read_metadata(good), format_version=999)
    bad = _rewrite(good, tmp_path / "new.keras", {"napari_unet.json": json.dumps(meta).encode()})
    for func in (read_metadata, load_model):
        message = _raises_naming(bad, func)
        assert "newer" in message and "upgrade" in message.lower()


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_dead_writers_are_removed(random_tiny, tmp_path):
    old = 1_000_000_000  # 2001: long past any grace period
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        dead = tmp_path / f".m.{_dead_pid()}.0123abcd.keras"
        live = tmp_path / f".m.{sleeper.pid}.4567cdef.keras"
        other = tmp_path / f".other.{_dead_pid()}.89abcdef.keras"
        fresh = tmp_path / f".m.{_dead_pid()}.fedcba98.keras"
        for p in (dead, live, other, fresh):
            p.write_bytes(b"partial")
        for p in (dead, live, other):
            os.utime(p, (old, old))
        save_model(random_tiny, tmp_path / "m.keras")
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(["m.keras", live.name, other.name, fresh.name])
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_file_mode_follows_umask(random_tiny, tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = save_model(random_tiny, tmp_path / "m.keras")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_every_load_failure_names_the_file(random_tiny, tmp_path, monkeypatch):
    good = save_model(random_tiny, tmp_path / "good.keras")
    data = good.read_bytes()
    (tmp_path / "m.h5").write_bytes(data)
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.keras").write_bytes(b"")
    random_tiny.keras_model.save(tmp_path / "foreign.keras")
    for name in ("missing.keras", "m.h5", "junk.keras", "cut.keras", "empty.keras",
                 "foreign.keras"):
        for func in (read_metadata, load_model):
            _raises_naming(tmp_path / name, func)
    flipped = tmp_path / "flipped.keras"
    for i in range(0, len(data), max(1, len(data) // 40)):
        flipped.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:])
        try:
            load_model(flipped)
        except ModelFileError as err:
            assert str(flipped) in str(err)
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path) == str(good):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    for func in (read_metadata, load_model):
        assert "ermission" in _raises_naming(good, func)


def test_a_model_with_non_finite_weights_is_not_saved(tmp_path):
    from napari_unet.model.config import UNetConfig
    from napari_unet.model.unet import UNetModel

    unet = UNetModel.new(UNetConfig(depth=1, start_neurons=2))
    unet.keras_model.set_weights([np.full_like(w, np.nan) for w in unet.keras_model.get_weights()])
    with pytest.raises(ValueError, match="not all finite"):
        save_model(unet, tmp_path / "m.keras")
    assert list(tmp_path.iterdir()) == []
