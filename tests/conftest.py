import atexit
import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_exit_status = {"code": None}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


def _exit_without_static_destructors():
    """This test process loads TensorFlow (core tests) *and* Mesa's OpenGL driver (napari
    widget tests); both carry a copy of LLVM, and their C++ static destructors abort at
    interpreter exit ("free(): invalid pointer") after every test has passed. The plugin
    never has both in one process (TensorFlow runs in the engine process), so after all
    results are reported, leave with the real status and skip those destructors."""
    code = _exit_status["code"]
    if code is not None and "tensorflow" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# registered first, so it runs after every other exit handler (napari, Qt, pytest)
atexit.register(_exit_without_static_destructors)


# ----------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="session")
def nuclei():
    """A 96x96 synthetic nuclei image and its instance labels."""
    from napari_unet.samples.nuclei import make_nuclei

    return make_nuclei((96, 96), seed=3)


@pytest.fixture(scope="session")
def trained_tiny():
    """A tiny U-Net trained briefly on synthetic nuclei (shared, do not modify)."""
    from napari_unet.samples.nuclei import make_nuclei
    from napari_unet.training.job import train

    from .helpers import TINY

    pairs = [make_nuclei((96, 96), seed=s) for s in (10, 11)]
    result = train([p[0] for p in pairs], [p[1] for p in pairs], TINY, patch_size=64,
                   batch_size=4, epochs=6, steps_per_epoch=10, learning_rate=3e-3, seed=0)
    return result.model


@pytest.fixture
def random_tiny():
    """An untrained tiny U-Net (depth 2, 4 filters)."""
    from napari_unet.model.config import UNetConfig
    from napari_unet.model.unet import UNetModel

    return UNetModel.new(UNetConfig(depth=2, start_neurons=4))
