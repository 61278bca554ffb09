"""Device-aware sizing, precision selection and the device-side input path."""

import json
import zipfile

import numpy as np
import pytest

from napari_unet.backend import devices
from napari_unet.model.config import UNetConfig
from napari_unet.model.files import load_model, save_model
from napari_unet.model.network import build_unet
from napari_unet.model.summary import ModelSummary
from napari_unet.model.unet import UNetModel
from napari_unet.prediction.api import predict
from napari_unet.prediction.tiling import TilePlan, prediction_memory_budget

GiB = 1 << 30


def test_prediction_budget_is_half_the_free_accelerator_memory(monkeypatch):
    monkeypatch.setattr(devices, "accelerator_memory", lambda: 40 * GiB)
    assert prediction_memory_budget() == 20 * GiB


def test_without_an_accelerator_the_budget_is_host_memory_capped_at_1_gib(monkeypatch):
    monkeypatch.setattr(devices, "accelerator_memory", lambda: None)
    assert 0 < prediction_memory_budget() <= GiB
    assert devices.accelerator_memory.__module__  # the real one is restored afterwards


def test_this_cpu_machine_reports_no_accelerator():
    assert devices.accelerator_memory() is None
    assert devices.gpu_compute_capability() is None


def test_a_large_gpu_runs_a_4096_image_as_one_window_and_64_planes_in_batches_of_32(monkeypatch):
    """With 40 GiB free (faked), the default U-Net sees the whole 4096^2 image at once (no
    halo recomputed) and 512^2 planes go 32 at a time; the 1 GiB host budget needs 9 tiles."""
    from napari_unet.model.costs import auto_tile_size

    monkeypatch.setattr(devices, "accelerator_memory", lambda: 40 * GiB)
    config, budget = UNetConfig(), prediction_memory_budget()
    tile = auto_tile_size(config, budget, (4096, 4096), accelerator=True)
    plan = TilePlan.make(config, (4096, 4096), tile, None, budget, accelerator=True)
    assert plan.window == (4096, 4096) and len(plan.tiles) == 1
    tile = auto_tile_size(config, budget, (512, 512), accelerator=True)
    plan = TilePlan.make(config, (512, 512), tile, None, budget, accelerator=True)
    assert plan.window == (512, 512) and len(plan.tiles) == 1 and plan.batch == 32
    host_tile = auto_tile_size(config, GiB, (4096, 4096))
    assert len(TilePlan.make(config, (4096, 4096), host_tile, None, GiB).tiles) > 1
    small_gpu = auto_tile_size(config, 4 * GiB, (4096, 4096), accelerator=True)
    assert small_gpu < auto_tile_size(config, 4 * GiB, (4096, 4096))  # GPUs need more per pixel


def test_on_this_cpu_jax_and_torch_calls_hold_their_fastest_size_tensorflow_the_budget():
    """JAX's and PyTorch's CPU convolutions ran slower per pixel in large calls
    (docs/benchmarks.md): 128² planes go 4 (JAX) or 16 (PyTorch) per call for the default
    U-Net, 32 on TensorFlow; an explicit batch_size, and the memory budget, still rule."""
    from napari_unet.backend.runtime import backend_name
    from napari_unet.model.costs import auto_tile_size

    call_bytes = devices.cpu_call_bytes()
    assert call_bytes == devices.CPU_CALL_BYTES.get(backend_name())
    config = UNetConfig()
    tile = auto_tile_size(config, GiB, (128, 128))
    plan = TilePlan.make(config, (128, 128), tile, None, GiB, call_bytes=call_bytes)
    assert plan.batch == {"jax": 4, "torch": 16}.get(backend_name(), 32)
    assert TilePlan.make(config, (128, 128), tile, 32, GiB, call_bytes=call_bytes).batch == 32
    one_window = int(devices.CPU_CALL_BYTES["jax"] // 4)
    assert TilePlan.make(config, (128, 128), tile, None, one_window, call_bytes=GiB).batch == 1
    assert TilePlan.make(config, (1024, 1024), 1024, None, GiB, call_bytes=1).batch == 1


@pytest.mark.parametrize("cuda", [True, False])
def test_a_pytorch_gpu_lifts_the_cpu_call_size(monkeypatch, cuda):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(devices, "backend_name", lambda: "torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert devices.cpu_call_bytes() == (None if cuda else devices.CPU_CALL_BYTES["torch"])


@pytest.mark.parametrize("capability, expected", [(None, "float32"), ((7, 5), "float32"),
                                                  ((8, 0), "mixed_bfloat16"),
                                                  ((9, 0), "mixed_bfloat16")])
def test_auto_precision_follows_the_gpu(monkeypatch, capability, expected):
    monkeypatch.setattr(devices, "gpu_compute_capability", lambda: capability)
    assert devices.resolve_precision("auto") == expected
    assert devices.resolve_precision("float32") == "float32"
    assert devices.resolve_precision("mixed_float16") == "mixed_float16"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        UNetConfig(precision="float16")
    with pytest.raises(ValueError, match="precision must be one of"):
        devices.resolve_precision("bf16")


def test_mixed_precision_network_keeps_float32_weights_and_output():
    km = build_unet(UNetConfig(depth=2, start_neurons=4, precision="mixed_bfloat16"))
    assert km.get_layer("enc1_conv1").compute_dtype == "bfloat16"
    assert km.get_layer("output").compute_dtype == "float32"
    assert all(w.dtype == "float32" for w in km.weights)


def test_mixed_bfloat16_predictions_agree_with_float32(trained_tiny, nuclei):
    """Same weights, 16-bit arithmetic: probabilities within 0.05 everywhere and 0.01 on
    average, labels on more than 99 % of the pixels the same (this tiny network)."""
    image, _ = nuclei
    config = UNetConfig(**{**trained_tiny.config.to_dict(), "precision": "mixed_bfloat16"})
    mixed = UNetModel(build_unet(config), ModelSummary(config=config))
    mixed.keras_model.set_weights(trained_tiny.keras_model.get_weights())
    exact, fast = predict(trained_tiny, image), predict(mixed, image)
    assert fast.dtype == np.float32
    assert np.abs(fast - exact).max() < 0.05 and np.abs(fast - exact).mean() < 0.01
    assert np.mean((fast > 0.5) == (exact > 0.5)) > 0.99


def test_model_files_hold_float32_networks_and_load_in_the_chosen_precision(tmp_path, trained_tiny):
    config = UNetConfig(**{**trained_tiny.config.to_dict(), "precision": "mixed_bfloat16"})
    mixed = UNetModel(build_unet(config), ModelSummary(config=config))
    mixed.keras_model.set_weights(trained_tiny.keras_model.get_weights())
    path = save_model(mixed, tmp_path / "mixed.keras")
    loaded = load_model(path)
    assert loaded.config.precision == "mixed_bfloat16"
    assert loaded.keras_model.get_layer("enc1_conv1").compute_dtype == "bfloat16"
    for a, b in zip(loaded.keras_model.get_weights(), trained_tiny.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with zipfile.ZipFile(path) as zf:
        stored = json.loads(zf.read("config.json"))
    policies = {layer["config"].get("dtype", {}).get("config", {}).get("name")
                for layer in stored["config"]["layers"] if layer["class_name"] != "InputLayer"}
    assert policies == {"float32"}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_raw_pixels_normalised_on_the_device_equal_host_normalisation(trained_tiny, dtype):
    """Integer and float32 images go to the network in their own dtype and are normalised
    there; float64 images are normalised here. Both give the same probabilities."""
    rng = np.random.default_rng(1)
    image = (rng.random((2, 72, 88)) * 200).astype(dtype)
    on_device = predict(trained_tiny, image)
    on_host = predict(trained_tiny, image.astype(np.float64))
    np.testing.assert_allclose(on_device, on_host, atol=2e-6)


def test_pipelined_batches_equal_one_batch(trained_tiny):
    rng = np.random.default_rng(2)
    stack = (rng.random((5, 64, 64)) * 1000).astype(np.uint16)
    np.testing.assert_allclose(predict(trained_tiny, stack, batch_size=2),
                               predict(trained_tiny, stack, batch_size=8), atol=1e-6)


def test_the_device_line_says_why_there_is_no_gpu():
    assert devices.describe_device().startswith("CPU — no GPU visible to ")
    assert "nvidia-smi is missing" in devices.describe_device()


@pytest.mark.parametrize("platform, smi, expected", [
    ("win32", None, "WSL2"),
    ("darwin", None, "Macs have no CUDA GPU"),
    ("linux", "/usr/bin/nvidia-smi", "tensorflow[and-cuda]"),
    ("linux", None, "no NVIDIA GPU or driver"),
])
def test_reasons_for_no_gpu(monkeypatch, platform, smi, expected):
    import shutil

    monkeypatch.setattr(devices.sys, "platform", platform)
    monkeypatch.setattr(shutil, "which", lambda name: smi)
    assert expected in devices.why_no_gpu("tensorflow")
