"""Backend-specific set-up and plain-language device descriptions.

Everything that depends on which Keras backend runs (TensorFlow memory growth,
out-of-memory exceptions, device listing) lives here, so the rest of the code
uses only the public Keras 3 API.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from types import ModuleType
from typing import Any, Iterator

import numpy as np


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
    """The Keras backend that will be used (without importing Keras)."""
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


def describe_device() -> str:
    """Say in plain words where the network runs, e.g. ``"CPU — no GPU visible to TensorFlow"``."""
    backend = backend_name()
    load_keras()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return "CPU — no GPU visible to TensorFlow: " + why_no_gpu("tensorflow")
        names = []
        for gpu in gpus:
            try:
                names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
            except Exception:  # noqa: BLE001 - details are best effort
                names.append(gpu.name)
        return "GPU — " + ", ".join(names) + " (TensorFlow)"
    if backend == "jax":
        import jax

        devices = jax.devices()
        if devices[0].platform == "cpu":
            return "CPU — no GPU visible to JAX: " + why_no_gpu("jax")
        return "GPU — " + ", ".join(d.device_kind for d in devices) + " (JAX)"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return "GPU — " + torch.cuda.get_device_name(0) + " (PyTorch)"
        return "CPU — no GPU visible to PyTorch: " + why_no_gpu("torch")
    return f"{backend} backend"


_GPU_PACKAGES = {"tensorflow": "pip install 'tensorflow[and-cuda]'",
                 "jax": "pip install 'jax[cuda12]'",
                 "torch": "a CUDA build of PyTorch (see pytorch.org)"}


def why_no_gpu(backend: str) -> str:
    """A plain sentence saying why ``backend`` computes on the CPU, and what to do."""
    import shutil

    if backend == "tensorflow" and sys.platform == "win32":
        return ("TensorFlow 2.11 and later have no GPU support on native Windows; use WSL2, "
                "or set KERAS_BACKEND=torch or jax with their CUDA builds.")
    if sys.platform == "darwin":
        return "Macs have no CUDA GPU; the CPU is used (Apple's Metal is not supported here)."
    if shutil.which("nvidia-smi"):
        return (f"an NVIDIA GPU is installed but this {backend} cannot use it (its CUDA "
                f"libraries are missing or do not match the driver); install "
                f"{_GPU_PACKAGES.get(backend, 'its CUDA build')}.")
    return "no NVIDIA GPU or driver was found on this computer (nvidia-smi is missing)."


def is_out_of_memory(error: BaseException) -> bool:
    """True if ``error`` means the backend ran out of (GPU or host) memory."""
    if isinstance(error, MemoryError):
        return True
    name = type(error).__name__
    text = str(error).lower()
    return name == "ResourceExhaustedError" or "out of memory" in text or "resource_exhausted" in text


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy name for ``precision``: ``"auto"`` gives ``"mixed_bfloat16"``
    where the backend sees a GPU with bfloat16 matrix units (compute capability >= 8.0,
    e.g. A100, H100) and ``"float32"`` elsewhere (CPUs gain nothing from it)."""
    from .config import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}.")
    if precision != "auto":
        return precision
    capability = gpu_compute_capability()
    return "mixed_bfloat16" if capability is not None and capability >= (8, 0) else "float32"


def gpu_compute_capability() -> tuple[int, int] | None:
    """(major, minor) CUDA compute capability of the first GPU the backend uses, or None."""
    backend = backend_name()
    load_keras()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "gpu":
                return None
            major, _, minor = str(getattr(device, "compute_capability", "0.0")).partition(".")
            return int(major), int(minor or 0)
        if backend == "torch":
            import torch

            return tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return None
            details = tf.config.experimental.get_device_details(gpus[0])
            return tuple(details.get("compute_capability", (0, 0)))
    except Exception:  # noqa: BLE001 - no usable GPU description: treat as none
        return None
    return None


def accelerator_memory() -> int | None:
    """Bytes free on the first accelerator the backend computes on, or None on a CPU.

    JAX reports its allocator's limit and use (by default it reserves 75 % of
    the card); PyTorch and TensorFlow ask the CUDA driver (``nvidia-smi`` for
    TensorFlow, which has no such query).
    """
    backend = backend_name()
    load_keras()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "cpu":
                return None
            stats = device.memory_stats() or {}
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
        if backend == "torch":
            import torch

            return int(torch.cuda.mem_get_info(0)[0]) if torch.cuda.is_available() else None
        if backend == "tensorflow":
            return _nvidia_smi_free_memory() if gpu_compute_capability() is not None else None
    except Exception:  # noqa: BLE001 - unknown: plan with host memory
        return None
    return None


def _nvidia_smi_free_memory() -> int | None:
    import subprocess

    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return int(out.split()[0]) * 2**20


class Forward:
    """The network's forward pass, normalisation included, dispatched without waiting.

    ``run(x, lo, scale)`` starts ``network((x - lo) / scale)`` on the device for
    a batch ``x`` (B, H, W, C) of float32 or raw integer pixels, with ``lo`` and
    ``scale`` shaped (B, 1, 1, C) float32, and returns a handle at once where the
    backend computes asynchronously (JAX, and TensorFlow or PyTorch on a GPU);
    ``fetch(handle)`` waits for it and returns float32 numpy (B, H, W, K). So the
    next batch is cut and sent while the device works on this one, raw 16-bit
    pixels cross the bus at half the bytes of float32, and the host never
    normalises. One compiled function per network and input dtype and shape.
    """

    def __init__(self, keras_model: Any):
        self.keras_model = keras_model
        self.backend = backend_name()
        self._compiled = self._compile()

    def _compile(self) -> Any:
        keras = load_keras()
        km, ops = self.keras_model, keras.ops

        def normalised(x, lo, scale):
            if len(x.shape) == 3:  # one channel, sent without its axis (see `run`)
                x = ops.expand_dims(x, -1)
            return (ops.cast(x, "float32") - lo) / scale

        if self.backend == "jax":
            import jax

            def pure(trainable, non_trainable, x, lo, scale):
                y, _ = km.stateless_call(trainable, non_trainable, normalised(x, lo, scale),
                                         training=False)
                return y

            jitted = jax.jit(pure)
            return lambda x, lo, scale: jitted([v.value for v in km.trainable_variables],
                                               [v.value for v in km.non_trainable_variables],
                                               x, lo, scale)
        if self.backend == "tensorflow":
            import tensorflow as tf

            xla = bool(tf.config.list_physical_devices("GPU"))
            return tf.function(lambda x, lo, scale: km(normalised(x, lo, scale), training=False),
                               jit_compile=xla, reduce_retracing=True)
        if self.backend == "torch":
            import torch

            def eager(x, lo, scale):
                if x.dtype.itemsize > 1 and x.dtype.kind == "u":  # torch lacks most uint16 ops
                    x = x.astype(np.int32)
                with torch.no_grad():
                    return km(normalised(ops.convert_to_tensor(x), ops.convert_to_tensor(lo),
                                         ops.convert_to_tensor(scale)), training=False)

            return eager
        return lambda x, lo, scale: km(normalised(x, lo, scale), training=False)

    def run(self, x: Any, lo: Any, scale: Any) -> Any:
        # a trailing axis of length 1 makes the host->device copy 6x slower on JAX/XLA GPUs
        # (58 ms instead of 10 ms for 4096² uint16, benchmarks/transfer_layouts.py)
        return self._compiled(x[..., 0] if x.shape[-1] == 1 else x, lo, scale)

    def fetch(self, handle: Any) -> Any:
        return np.asarray(load_keras().ops.convert_to_numpy(handle), dtype=np.float32)


def forward_for(keras_model: Any) -> Forward:
    """The `Forward` of ``keras_model``, made once and kept on the model."""
    forward = getattr(keras_model, "_napari_unet_forward", None)
    if forward is None:
        forward = Forward(keras_model)
        keras_model._napari_unet_forward = forward
    return forward


class DataParallel:
    """Data-parallel training over ``devices`` local devices, through the backend's own
    engine: ``keras.distribution.DataParallel`` on JAX, ``tf.distribute.MirroredStrategy``
    on TensorFlow. Each batch is split evenly across the devices and the gradients are
    averaged. ``scope()`` is entered where the network is built and compiled, and again
    on the thread that runs ``fit`` (Keras keeps the distribution per thread).

    Several machines: start every worker with the engine's own set-up first
    (``TF_CONFIG`` with ``tf.distribute.MultiWorkerMirroredStrategy``, or
    ``jax.distributed.initialize()``); the devices listed are then those of all workers.
    """

    def __init__(self, engine: Any, devices: int, names: list[str]):
        self.engine, self.devices, self.names = engine, devices, names

    def scope(self) -> Any:
        return self.engine.scope()


def data_parallel(enabled: bool | None) -> DataParallel | None:
    """The `DataParallel` plan for this process, or None to train on one device.

    ``enabled``: None uses every local GPU when there are several (never CPUs);
    True uses every local device of the first kind found (GPUs, else CPU devices,
    e.g. logical ones), and needs at least two; False uses one device.
    """
    if enabled is False:
        return None
    backend = backend_name()
    keras = load_keras()
    if backend == "jax":
        import jax

        devices = jax.devices()
        if devices[0].platform == "cpu" and not enabled:
            return None
        engine_for = lambda: keras.distribution.DataParallel(devices=devices)  # noqa: E731
        names = [str(d) for d in devices]
    elif backend == "tensorflow":
        import tensorflow as tf

        logical = tf.config.list_logical_devices("GPU")
        if not logical and enabled:
            logical = tf.config.list_logical_devices("CPU")
        names = [d.name for d in logical]
        engine_for = lambda: tf.distribute.MirroredStrategy(names)  # noqa: E731
    else:
        if enabled:
            raise ValueError(f"Data-parallel training needs the jax or tensorflow backend; "
                             f"KERAS_BACKEND is {backend!r}.")
        return None
    if len(names) < 2:
        if enabled:
            raise ValueError(f"Data-parallel training needs at least two devices; the "
                             f"{backend} backend sees {len(names)} ({', '.join(names)}).")
        return None
    return DataParallel(engine_for(), len(names), names)
