import json
import subprocess
import sys

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.io.images import read_image, write_image
from napari_unet.model.files import save_model
from napari_unet.samples.nuclei import make_nuclei


def test_quick_demo_writes_all_outputs(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    for name in ("model.keras", "labels.tif", "overlay.png", "metrics.json"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["foreground_iou"] <= 1.0 and 0.0 <= metrics["ap@0.5"] <= 1.0
    assert metrics["target"] == "boundary" and metrics["calibration"]["metric"] == "ap@0.5"
    assert "foreground IoU" in capsys.readouterr().out
    overlay = read_image(tmp_path / "overlay.png")
    assert overlay.ndim == 3 and overlay.shape[-1] == 3


def _image_folders(tmp_path, mask=lambda labels: labels.astype(np.uint8), suffix=".png"):
    """tmp_path/images and tmp_path/masks with two 64 px nuclei images and ``mask(labels)``."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for s in range(2):
        image, labels = make_nuclei((64, 64), seed=s)
        write_image(images / f"cell{s}.tif", image)
        write_image(masks / f"cell{s}{suffix}", mask(labels))
    return images, masks


def test_train_predict_evaluate_on_files(tmp_path, capsys):
    images, masks = _image_folders(tmp_path)
    model = tmp_path / "model.keras"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(model),
                 "--depth", "2", "--start-neurons", "4", "--epochs", "1", "--steps", "2",
                 "--patch-size", "32", "--batch-size", "2", "--border-weight", "10"]) == 0
    assert model.is_file()
    out, probs = tmp_path / "labels.tif", tmp_path / "probs.tif"
    assert main(["predict", str(model), str(images / "cell0.tif"), str(out),
                 "--probabilities", str(probs), "--min-size", "3"]) == 0
    labels = read_image(out)
    assert labels.shape == (64, 64) and labels.dtype.kind == "u"
    assert read_image(probs).dtype == np.float32
    small = tmp_path / "probs8.tif"
    assert main(["predict", str(model), str(images / "cell0.tif"), str(tmp_path / "l8.tif"),
                 "--probabilities", str(small), "--probabilities-as", "uint8"]) == 0
    assert read_image(small).dtype == np.uint8
    assert np.abs(read_image(small) / 255.0 - read_image(probs)).max() <= 0.5 / 255 + 1e-6
    assert main(["evaluate", str(model), "--images", str(images), "--masks", str(masks)]) == 0
    assert main(["info", str(model)]) == 0
    report = capsys.readouterr().out
    assert "mean_foreground_iou" in report and '"parameters"' in report
    assert '"mean_ap@0.5"' in report and '"mean_dice"' in report
    # fine-tune the saved model (decoder only) and map where it is unsure
    tuned = tmp_path / "tuned.keras"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(tuned),
                 "--model", str(model), "--freeze-encoder", "--lr", "1e-4", "--epochs", "1",
                 "--steps", "2", "--patch-size", "32", "--batch-size", "2"]) == 0
    from napari_unet.model.files import load_model

    assert load_model(model).info["border_weight"] == 10  # recorded with the settings
    rounds = load_model(tuned).info["rounds"]
    assert len(rounds) == 2 and rounds[1]["freeze_encoder"] and rounds[1]["learning_rate"] == 1e-4
    entropy = tmp_path / "unsure.tif"
    assert main(["predict", str(tuned), str(images / "cell1.tif"), str(tmp_path / "l.tif"),
                 "--uncertainty", str(entropy), "--passes", "3"]) == 0
    assert read_image(entropy).shape == (64, 64) and read_image(entropy).dtype == np.float32
    assert read_image(tmp_path / "unsure_spread.tif").shape == (64, 64)
    assert "3 dropout passes" in capsys.readouterr().out


def test_errors_exit_2_with_a_message(tmp_path, capsys, trained_tiny):
    assert main(["predict", str(tmp_path / "missing.keras"), "a.tif", "b.tif"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    write_image(tmp_path / "images" / "a.tif", np.zeros((8, 8), np.uint8))
    assert main(["train", "--images", str(tmp_path / "images"), "--masks",
                 str(tmp_path / "masks"), "--out", str(tmp_path / "m.keras")]) == 2
    assert "No mask for image" in capsys.readouterr().err
    model = save_model(trained_tiny, tmp_path / "m.keras")
    (tmp_path / "x.jpg").write_bytes(b"")
    assert main(["predict", str(model), str(tmp_path / "x.jpg"), str(tmp_path / "o.tif")]) == 2
    assert "only TIFF" in capsys.readouterr().err
    assert main(["train", "--images", str(tmp_path / "images"), "--masks",
                 str(tmp_path / "masks"), "--out", str(tmp_path / "n.keras"),
                 "--freeze-encoder"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["predict", str(model), str(tmp_path / "images"), str(tmp_path / "out"),
                 "--uncertainty", str(tmp_path / "u.tif")]) == 2
    assert "single image files" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "napari_unet.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("demo", "train", "predict", "evaluate"):
        assert command in out


def test_predict_zarr_lazily_to_zarr(tmp_path, trained_tiny):
    zarr = pytest.importorskip("zarr")
    image, _ = make_nuclei((150, 130), seed=9)
    src = str(tmp_path / "in.zarr")
    z = zarr.open_array(src, mode="w", shape=image.shape, chunks=(64, 64), dtype=image.dtype)
    z[:] = image
    model = save_model(trained_tiny, tmp_path / "m.keras")
    out = str(tmp_path / "out.zarr")
    assert main(["predict", str(model), src, out, "--semantic"]) == 0
    from napari_unet.prediction.api import segment

    result = zarr.open_array(out, mode="r")[:]
    np.testing.assert_array_equal(result, segment(trained_tiny, image, instances=False))
    assert main(["predict", str(model), src, str(tmp_path / "out.tif")]) == 2


def test_info_without_a_model_says_where_networks_run(capsys):
    import json

    assert main(["info"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["device"].startswith("CPU — no GPU visible to")
    assert env["precision_auto"] == "float32" and env["data_parallel_devices"] == 1
    assert env["accelerator_free_gib"] is None and 0 < env["prediction_memory_budget_gib"] <= 1


def test_evaluate_scores_each_class_of_a_multi_class_model(tmp_path, capsys):
    two_kinds = lambda labels: np.where(labels > 0, 1 + labels % 2, 0).astype(np.uint8)  # noqa: E731
    images, masks = _image_folders(tmp_path, two_kinds, ".tif")
    model = tmp_path / "classes.keras"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(model),
                 "--depth", "2", "--start-neurons", "4", "--classes", "3", "--epochs", "1",
                 "--steps", "2", "--patch-size", "32", "--batch-size", "2"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), "--images", str(images), "--masks", str(masks)]) == 0
    report = json.loads(capsys.readouterr().out)
    first = report["images"][0]
    # the true masks hold both classes, so both are scored whatever the model predicts
    assert {"class 1 iou", "class 1 dice", "class 1 ap@0.5", "class 2 iou",
            "mean_class_iou"} <= set(first)
    assert "mean_mean_class_iou" in report and "mean_foreground_iou" in report
