"""The core tests that touch Keras, run again under the JAX and PyTorch backends.

Each backend runs in its own Python process (``KERAS_BACKEND`` is read once, when
Keras is imported); the TensorFlow run is the main suite itself. The modules below
are those whose code paths differ by backend: building, training (``fit`` on a
thread, callbacks synchronous or not), prediction (the compiled forward pass, the
device-side normalisation), model files (and those saved by v0.2), losses, lazy
prediction, precision and device sizing, argument checks and divergence, and bioimage.io
export (data-parallel
training has its own two-backend test). The rest of the core suite is pure
numpy or the CLI; it was run under both backends by hand (docs/benchmarks.md).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
MODULES = ["model/test_model.py", "training/test_training.py", "prediction/test_prediction.py",
           "backend/test_devices.py", "model/test_model_files.py", "model/test_legacy_files.py",
           "training/test_losses.py", "prediction/test_lazy.py", "model/test_normalization.py",
           "backend/test_forward.py",
           "test_argument_checks.py", "bioimageio/test_bioimageio.py", "prediction/test_reduced.py"]

# what takes longest under JAX without a backend-specific path of its own: a dask cluster's
# worker processes (the model travels as bytes) and the TZYX layouts of lazy prediction
DESELECTED = "not distributed_cluster and not TZYX"


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_core_tests_pass_under(backend):
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xvfb",
         "-k", DESELECTED, *[str(TESTS / m) for m in MODULES]],
        env=env, capture_output=True, text=True, timeout=1800, cwd=TESTS.parent)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"{backend}: {summary}\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert " passed" in summary and "skipped" not in summary.replace("deselected", ""), summary
