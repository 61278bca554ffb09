"""Data-parallel training on two logical CPU devices, through each backend's own engine.

The devices must be made before the backend starts, so each case runs in a fresh
Python process (JAX: ``--xla_force_host_platform_device_count=2``; TensorFlow: two
logical CPU devices and ``MirroredStrategy``).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys
    backend = os.environ["KERAS_BACKEND"]
    if backend == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import numpy as np
    from napari_unet import UNetConfig, make_nuclei, train
    from napari_unet.backend.parallel import data_parallel

    image, labels = make_nuclei((96, 96), seed=1)
    plan = data_parallel(True)
    out = {"devices": plan.devices}
    try:
        train(image, labels, UNetConfig(depth=1, start_neurons=4), patch_size=32, batch_size=3,
              epochs=1, steps_per_epoch=1, data_parallel=True, verbose=False)
    except ValueError as err:
        out["odd_batch"] = str(err)
    model, history = train(image, labels, UNetConfig(depth=1, start_neurons=4), patch_size=32,
                           batch_size=4, epochs=2, steps_per_epoch=3, data_parallel=True,
                           seed=0, verbose=False)
    out["loss"] = history["loss"]
    out["val_loss"] = history["val_loss"]
    km = model.keras_model
    if backend == "jax":
        out["weight_devices"] = len(km.trainable_variables[0].value.sharding.device_set)
    else:
        out["weight_devices"] = km.distribute_strategy.num_replicas_in_sync
    x = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    from napari_unet import predict
    out["prediction_finite"] = bool(np.isfinite(predict(model, x)).all())
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_training_splits_each_batch_over_two_devices(backend, tmp_path):
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    script = tmp_path / "parallel.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["devices"] == 2 and out["weight_devices"] == 2
    assert "multiple of the 2 devices" in out["odd_batch"]
    assert len(out["loss"]) == 2 and all(v == v and v < 10 for v in out["loss"] + out["val_loss"])
    assert out["prediction_finite"]


def test_torch_refuses_data_parallel_in_plain_words(monkeypatch):
    from napari_unet.backend import parallel

    monkeypatch.setattr(parallel, "backend_name", lambda: "torch")
    monkeypatch.setattr(parallel, "load_keras", lambda: None)
    with pytest.raises(ValueError, match="needs the jax or tensorflow backend"):
        parallel.data_parallel(True)
    assert parallel.data_parallel(None) is None and parallel.data_parallel(False) is None


def test_one_cpu_device_trains_on_one_device_by_default():
    from napari_unet.backend.parallel import data_parallel

    assert data_parallel(None) is None
    with pytest.raises(ValueError, match="at least two devices|needs the jax or tensorflow"):
        data_parallel(True)
