"""Data-parallel training over several local devices, through the backend's own engine.
"""

from __future__ import annotations

from typing import Any

from .runtime import backend_name, load_keras


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
