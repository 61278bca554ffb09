import atexit
import os
import sys

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
