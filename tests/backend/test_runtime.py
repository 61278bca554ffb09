"""The one place that knows the backend: safe import, quiet start-up, memory errors, devices."""

import os
import subprocess
import sys

from napari_unet.backend.devices import describe_device
from napari_unet.backend.runtime import backend_name, is_out_of_memory, make_adam


def test_out_of_memory_is_recognised():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: OOM when allocating"))
    assert not is_out_of_memory(ValueError("bad shape"))


def test_device_is_described_in_plain_words():
    assert describe_device().startswith(("CPU", "GPU"))
    assert backend_name() == os.environ.get("KERAS_BACKEND", "tensorflow")


def test_adam_is_keras_adam_with_the_learning_rate():
    import keras
    import numpy as np

    adam = make_adam(0.01)
    assert isinstance(adam, keras.optimizers.Adam)
    assert np.isclose(float(np.asarray(adam.learning_rate)), 0.01)


def test_tensorflow_start_up_is_quiet_by_default():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    code = "from napari_unet.backend.runtime import load_keras; load_keras(); print('ok')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "ok"
    assert "oneDNN" not in done.stderr and "cuda" not in done.stderr.lower()
