"""Where networks run, in plain words: the device a backend computes on (and why not
a GPU), its compute capability and free memory, and the precision ``"auto"`` picks.
"""

from __future__ import annotations

import sys

from .runtime import backend_name, load_keras

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


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


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy name for ``precision``: ``"auto"`` gives ``"mixed_bfloat16"``
    where the backend sees a GPU with bfloat16 matrix units (compute capability >= 8.0,
    e.g. A100, H100) and ``"float32"`` elsewhere (CPUs gain nothing from it)."""
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


# Most bytes of activations (as `napari_unet.model.costs.inference_bytes_per_pixel` estimates
# them) one call of the forward pass should hold on a CPU. Larger calls ran slower per pixel
# with XLA's and PyTorch's CPU convolutions (JAX: batch 32 of 128² windows 1.4 Mpx/s against
# 2.0-2.4 at batch 4); TensorFlow's did not slow down from 8 windows up. Measured on a 2-core
# EPYC (2 MiB L2 per core, 32 MiB L3) with 8, 16 and 32 first-level filters, whose best batches
# all held about these bytes (docs/benchmarks.md, "Windows per call on a CPU").
CPU_CALL_BYTES = {"jax": 25 << 20, "torch": 100 << 20}


def cpu_call_bytes() -> int | None:
    """The most activation bytes one forward call should hold where the backend computes
    on the CPU (`CPU_CALL_BYTES`), or None: on an accelerator, or a backend whose CPU
    convolutions keep their speed in large calls (TensorFlow)."""
    backend = backend_name()
    if backend not in CPU_CALL_BYTES:
        return None
    load_keras()
    if backend == "jax":
        import jax

        on_cpu = jax.devices()[0].platform == "cpu"
    else:
        import torch

        mps = getattr(torch.backends, "mps", None)
        on_cpu = not (torch.cuda.is_available() or (mps is not None and mps.is_available()))
    return CPU_CALL_BYTES[backend] if on_cpu else None


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
