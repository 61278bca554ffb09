"""The command line never loses the user's files, checks before it works, and fails in one line."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from napari_unet import cli
from napari_unet.cli import main
from napari_unet.io.images import read_image, write_image
from napari_unet.model.files import load_model, save_model
from napari_unet.samples.nuclei import make_nuclei


@pytest.fixture
def files(tmp_path, trained_tiny):
    """A model file, an input image and an image/mask folder pair in ``tmp_path``."""
    image, labels = make_nuclei((64, 64), seed=5)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    write_image(tmp_path / "images" / "cell.tif", image)
    write_image(tmp_path / "masks" / "cell.png", labels.astype(np.uint8))
    return {"model": str(save_model(trained_tiny, tmp_path / "m.keras")),
            "image": str(tmp_path / "images" / "cell.tif"), "dir": tmp_path}


def _bytes(path):
    return open(path, "rb").read()


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("extra", [[], ["--probabilities", "{image}"]])
def test_predict_refuses_to_overwrite_its_input(files, capsys, extra):
    before = _bytes(files["image"])
    out = files["image"] if not extra else str(files["dir"] / "labels.tif")
    argv = ["predict", files["model"], files["image"], out] + [a.format(**files) for a in extra]
    assert main(argv + ["--overwrite"]) == 2
    assert "would overwrite the input" in _err_line(capsys)
    assert _bytes(files["image"]) == before


def test_predict_refuses_an_input_reached_through_a_link(files, capsys):
    link = files["dir"] / "link.tif"
    link.symlink_to(files["image"])
    before = _bytes(files["image"])
    assert main(["predict", files["model"], files["image"], str(link), "--overwrite"]) == 2
    assert "would overwrite the input" in _err_line(capsys)
    assert _bytes(files["image"]) == before and link.is_symlink()


def test_predict_refuses_the_same_path_for_labels_and_probabilities(files, capsys):
    out = str(files["dir"] / "o.tif")
    assert main(["predict", files["model"], files["image"], out, "--probabilities", out]) == 2
    assert "same path" in _err_line(capsys)
    assert not os.path.exists(out)


def test_existing_outputs_need_overwrite(files, capsys):
    out = files["dir"] / "o.tif"
    out.write_bytes(b"precious")
    assert main(["predict", files["model"], files["image"], str(out)]) == 2
    assert "--overwrite" in _err_line(capsys)
    assert out.read_bytes() == b"precious"
    assert main(["predict", files["model"], files["image"], str(out), "--overwrite"]) == 0
    assert read_image(out).shape == (64, 64)
    assert sorted(p.name for p in files["dir"].iterdir() if p.name.startswith(".")) == []


def test_train_refuses_to_replace_a_model_and_checks_out_before_training(files, capsys):
    before = _bytes(files["model"])
    base = ["train", "--images", str(files["dir"] / "images"), "--masks",
            str(files["dir"] / "masks"), "--depth", "1", "--start-neurons", "2", "--epochs", "1",
            "--steps", "1", "--patch-size", "32", "--batch-size", "1"]
    assert main(base + ["--out", files["model"]]) == 2
    assert "already exists" in _err_line(capsys)
    assert _bytes(files["model"]) == before
    assert main(base + ["--out", str(files["dir"] / "nodir" / "m.keras")]) == 2
    captured = capsys.readouterr()
    assert "does not exist" in captured.err and "epoch" not in captured.err
    assert main(base + ["--out", files["model"], "--overwrite"]) == 0
    assert load_model(files["model"]).config.depth == 1


@pytest.mark.parametrize("target, fragment", [("nodir/o.tif", "does not exist"),
                                              ("adir.tif", "is a folder")])
def test_predict_checks_the_destination_before_predicting(files, capsys, monkeypatch, target,
                                                          fragment):
    (files["dir"] / "adir.tif").mkdir()
    called = []
    monkeypatch.setattr("napari_unet.model.files.load_model", lambda *a: called.append(a))
    assert main(["predict", files["model"], files["image"], str(files["dir"] / target),
                 "--overwrite"]) == 2
    assert fragment in _err_line(capsys)
    assert called == []


def test_a_probability_png_is_refused_before_any_file_is_written(files, capsys):
    probs = files["dir"] / "p.png"
    assert main(["predict", files["model"], files["image"], str(files["dir"] / "o.tif"),
                 "--probabilities", str(probs)]) == 2
    assert ".tif" in _err_line(capsys)
    assert not probs.exists() and not (files["dir"] / "o.tif").exists()


def test_unreadable_inputs_are_named(files, capsys):
    corrupt = files["dir"] / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 20)
    assert main(["predict", files["model"], str(corrupt), str(files["dir"] / "o.tif")]) == 2
    line = _err_line(capsys)
    assert "corrupt" in line and "corrupt.tif" in line
    assert main(["predict", files["model"], str(files["dir"] / "images"),
                 str(files["dir"] / "o.tif")]) == 2
    assert "is a folder, so the output must be a folder" in _err_line(capsys)
    assert not (files["dir"] / "o.tif").exists()


def test_training_errors_name_the_file(files, capsys):
    write_image(files["dir"] / "images" / "wide.tif", np.zeros((64, 80), np.uint16))
    write_image(files["dir"] / "masks" / "wide.png", np.zeros((64, 64), np.uint8))
    assert main(["train", "--images", str(files["dir"] / "images"), "--masks",
                 str(files["dir"] / "masks"), "--out", str(files["dir"] / "n.keras")]) == 2
    assert "wide.tif" in _err_line(capsys)


@pytest.mark.parametrize("argv, fragment", [
    (["--config", "missing.json"], "--config file"),
    (["--axes", "YXC"], "--axes"),
    (["--label-mode", "sparse", "--border-weight", "10"], "border_weight needs dense instance"),
    (["--border-sigma", "3", "--border-weight", "0"], "--border-weight 0 turns it off"),
])
def test_train_option_errors_are_one_line(files, capsys, argv, fragment):
    assert main(["train", "--images", str(files["dir"] / "images"), "--masks",
                 str(files["dir"] / "masks"), "--out", str(files["dir"] / "n.keras")] + argv) == 2
    assert fragment in _err_line(capsys)


@pytest.mark.parametrize("option, value", [("--threshold", "1.5"), ("--threshold", "-1"),
                                           ("--threshold", "nan"), ("--batch-size", "-1"),
                                           ("--batch-size", "0"), ("--min-size", "-5"),
                                           ("--tile-size", "0")])
def test_out_of_range_numbers_are_refused(files, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", files["model"], files["image"], str(files["dir"] / "o.tif"), option, value])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err
    assert not (files["dir"] / "o.tif").exists()


def test_zarr_input_equal_to_output_is_refused_and_missing_zarr_explained(files, capsys, monkeypatch):
    zarr = pytest.importorskip("zarr")
    src = str(files["dir"] / "in.zarr")
    z = zarr.open_array(src, mode="w", shape=(64, 64), chunks=(32, 32), dtype="uint16")
    z[:] = read_image(files["image"])
    for out in (src, os.path.join(src, "inner.zarr")):
        assert main(["predict", files["model"], src, out, "--overwrite"]) == 2
        assert "would overwrite the input" in _err_line(capsys)
    np.testing.assert_array_equal(zarr.open_array(src, mode="r")[:], read_image(files["image"]))
    monkeypatch.setitem(sys.modules, "zarr", None)
    assert main(["predict", files["model"], src, str(files["dir"] / "o.zarr")]) == 2
    assert "pip install zarr" in _err_line(capsys)


def test_zarr_probabilities_come_from_the_same_single_pass(files, trained_tiny, monkeypatch):
    zarr = pytest.importorskip("zarr")
    from napari_unet.prediction import lazy
    from napari_unet.prediction.api import predict

    image = read_image(files["image"])
    src = str(files["dir"] / "in.zarr")
    zarr.open_array(src, mode="w", shape=image.shape, chunks=(64, 64), dtype=image.dtype)[:] = image
    calls = []
    original = lazy._predict_with_handle
    monkeypatch.setattr(lazy, "_predict_with_handle",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    out, probs = str(files["dir"] / "o.zarr"), str(files["dir"] / "p.zarr")
    assert main(["predict", files["model"], src, out, "--probabilities", probs]) == 0
    assert len(calls) == 1  # one block, predicted once for both outputs
    np.testing.assert_allclose(zarr.open_array(probs, mode="r")[:], predict(trained_tiny, image),
                               atol=1e-6)


def test_unexpected_errors_are_one_line_unless_debug(files, capsys, monkeypatch):
    def boom(args):
        raise RuntimeError("something odd")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), boom))
    assert main(["info", files["model"]]) == 1
    assert "internal error" in _err_line(capsys)
    assert main(["--debug", "info", files["model"]]) == 1
    assert "Traceback" in capsys.readouterr().err


def _with_func(parser, func):
    for action in parser._subparsers._group_actions:
        action.choices["info"].set_defaults(func=func)
    return parser


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "(default: 128)" in out and "(default: sized from the annotated" in out


def _run_cli(*argv):
    """The CLI in a subprocess, with the environment of a user's shell (no TF log settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    return subprocess.Popen([sys.executable, "-m", "napari_unet.cli", *argv], text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_console_is_quiet_about_tensorflow(files):
    proc = _run_cli("predict", files["model"], files["image"], str(files["dir"] / "o.tif"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    for chatter in ("oneDNN", "cuInit", "absl", "cuda drivers"):
        assert chatter not in err


def test_ctrl_c_during_training_saves_the_best_weights(files):
    out = files["dir"] / "interrupted.keras"
    proc = _run_cli("train", "--images", str(files["dir"] / "images"), "--masks",
                    str(files["dir"] / "masks"), "--out", str(out), "--depth", "1",
                    "--start-neurons", "2", "--epochs", "500", "--steps", "2", "--patch-size",
                    "32", "--batch-size", "1")
    lines = []
    for line in proc.stderr:  # wait until the first epoch has ended
        lines.append(line)
        if "epoch 1/500" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(lines) + err
    assert "saved the best weights so far" in err and str(out) in err
    info = load_model(out).info
    assert info["stopped_early"] is True and 1 <= info["best_epoch"] < 500


def test_info_on_a_bad_model_file_is_one_line(files, capsys):
    import json
    import zipfile

    bad = files["dir"] / "bad.keras"
    with zipfile.ZipFile(files["model"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "napari_unet.json":
                data = json.dumps({"format": "napari-unet", "format_version": 1,
                                   "config": []}).encode()
            dst.writestr(item, data)
    assert main(["info", str(bad)]) == 2
    assert "bad.keras" in _err_line(capsys)


@pytest.mark.parametrize("argv", [
    ["predict", "m.keras", "in.tif", "out.tif", "--tile-size", "0"],
    ["predict", "m.keras", "in.tif", "out.tif", "--threshold", "nan"],
    ["predict", "m.keras", "in.tif", "out.tif", "--uncertainty", "u.tif", "--passes", "1000000"],
    ["train", "--images", "i", "--masks", "m", "--out", "o.keras", "--epochs", "-1"],
    ["train", "--images", "i"],
])
def test_option_errors_are_one_line_without_the_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"napari-unet {argv[0]}: error: ")


def test_info_into_a_closed_pipe_ends_quietly(files):
    """``napari-unet info m.keras | head -c 10``: no "Broken pipe" message, status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "napari_unet.cli", "info", files["model"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Broken pipe" not in err, err.decode()[-2000:]


def test_a_full_disk_replaces_no_output_and_names_the_file(files, capsys, monkeypatch):
    """--overwrite with labels and probabilities: the second write fails (no space left),
    so neither old output is replaced, and the one line names the file."""
    import errno

    from napari_unet.io import images

    labels, probs = files["dir"] / "labels.tif", files["dir"] / "probs.tif"
    labels.write_bytes(b"old labels")
    probs.write_bytes(b"old probabilities")
    real = images._write

    def full_disk(partial, path, array, *meta):
        if array.dtype == np.float32:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(partial, path, array, *meta)

    monkeypatch.setattr(images, "_write", full_disk)
    argv = ["predict", files["model"], files["image"], str(labels), "--probabilities", str(probs),
            "--overwrite"]
    assert main(argv) == 2
    line = _err_line(capsys)
    assert "No space left on device" in line and "probs.tif" in line
    assert labels.read_bytes() == b"old labels" and probs.read_bytes() == b"old probabilities"
    assert sorted(p.name for p in files["dir"].iterdir() if p.name.startswith(".")) == []


def test_uncertainty_options_are_checked_before_any_output_is_written(files, capsys):
    out = files["dir"] / "o.tif"
    assert main(["predict", files["model"], files["image"], str(out), "--uncertainty",
                 str(files["dir"] / "u.png")]) == 2
    assert "--uncertainty must be a .tif file" in _err_line(capsys) and not out.exists()


def test_absurd_training_sizes_are_refused_before_anything_is_allocated(files, capsys):
    base = ["train", "--images", str(files["dir"] / "images"), "--masks",
            str(files["dir"] / "masks"), "--out", str(files["dir"] / "n.keras")]
    for option, value in (("--patch-size", "30000"), ("--batch-size", "2000000")):
        assert main(base + [option, value]) == 2
        assert "GiB are free; use smaller patches or batches" in _err_line(capsys)
    assert not (files["dir"] / "n.keras").exists()
