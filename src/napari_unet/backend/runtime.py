"""The Keras runtime: the one place Keras (and TensorFlow) is imported, quietly and
safely, and what depends on which backend runs but not on the device: the backend's
name, TensorFlow's set-up, the leak-free Adam and out-of-memory recognition.

Everything else in napari-unet uses the public Keras 3 API through `load_keras`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from types import ModuleType
from typing import Any, Iterator


def load_keras() -> ModuleType:
    """Import and return ``keras``, first importing its backend safely and configuring it.

    Every Keras import in napari-unet goes through here. On Linux TensorFlow is
    imported with ``RTLD_DEEPBIND``: once napari has created an OpenGL context,
    Mesa's driver has put its own ``libLLVM`` into the process with global
    symbols, and TensorFlow's bundled LLVM would bind to it and crash. With
    DEEPBIND TensorFlow's libraries use their own symbols first.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend_name() == "tensorflow" and "tensorflow" not in sys.modules:
        flags = sys.getdlopenflags()
        deepbind = getattr(os, "RTLD_DEEPBIND", 0)
        if sys.platform.startswith("linux") and deepbind:
            sys.setdlopenflags(os.RTLD_NOW | deepbind)
        try:
            with quiet_native_stderr():
                import tensorflow  # noqa: F401
        finally:
            sys.setdlopenflags(flags)
        with quiet_native_stderr():  # listing GPUs initialises CUDA, which complains without one
            configure_backend()
    import keras

    return keras


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide what native code writes to standard error (TensorFlow's start-up notes on
    oneDNN and CUDA; Keras imports TensorFlow to save and load models on every backend
    where it is installed) while ``TF_CPP_MIN_LOG_LEVEL`` is 2 or 3 (3 is the default here);
    set it to 0 (``napari-unet --debug`` does) to see them."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") not in ("2", "3"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no real file descriptor 2
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def make_adam(learning_rate: float) -> Any:
    """A ``keras.optimizers.Adam`` with ``learning_rate`` that does not leak on TensorFlow.

    Keras' TensorFlow optimizer sums the gradients over replicas with the replica
    context's ``all_reduce`` even on a single device. In the traced train step that
    is a ``tf.custom_gradient``, whose gradient function TensorFlow keeps in a
    process-wide registry for ever (tensorflow/tensorflow#97697), holding the traced
    graph, the model's weights and the Adam moments: every training kept 25 to 60 MiB.
    With one replica the sum is the identity, so this optimizer skips it.
    """
    return _adam_class()(learning_rate)


@functools.cache
def _adam_class() -> type:
    """``keras.optimizers.Adam``, on TensorFlow subclassed to skip the one-replica all-reduce."""
    keras = load_keras()
    if backend_name() != "tensorflow":
        return keras.optimizers.Adam
    import tensorflow as tf

    class SingleReplicaAdam(keras.optimizers.Adam):
        def _all_reduce_sum_gradients(self, grads_and_vars):
            context = tf.distribute.get_replica_context()
            if context is not None and context.num_replicas_in_sync == 1:
                return list(grads_and_vars)
            return super()._all_reduce_sum_gradients(grads_and_vars)

    return SingleReplicaAdam


def backend_name() -> str:
    """The Keras backend in use: Keras' own answer once it is imported (other libraries,
    such as bioimageio.core, may set ``KERAS_BACKEND`` after that, which no longer
    changes the backend), else the one ``KERAS_BACKEND`` will choose (Keras not imported)."""
    keras_backend = getattr(sys.modules.get("keras"), "backend", None)
    if keras_backend is not None and hasattr(keras_backend, "backend"):
        return keras_backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def configure_backend() -> None:
    """Quiet TensorFlow's start-up chatter and let GPU memory grow as needed.

    Safe to call many times: memory growth can only be set before TensorFlow
    initialises its GPUs, and the "already initialised" error is ignored.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend_name() != "tensorflow":
        return
    import tensorflow as tf

    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") in ("2", "3"):
        tf.get_logger().setLevel("ERROR")  # e.g. "retracing" notes when models are rebuilt
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised
            pass


def is_out_of_memory(error: BaseException) -> bool:
    """True if ``error`` means the backend ran out of (GPU or host) memory."""
    if isinstance(error, MemoryError):
        return True
    name = type(error).__name__
    text = str(error).lower()
    return name == "ResourceExhaustedError" or "out of memory" in text or "resource_exhausted" in text


def release_free_memory() -> None:
    """Give the memory the C heap holds free back to the system (glibc's ``malloc_trim``;
    elsewhere nothing). A training frees hundreds of MiB of buffers in many pieces; without
    this the process keeps them, and its size creeps up training after training."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        pass
