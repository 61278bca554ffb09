"""The compiled forward pass every prediction runs through (`Forward`), with the
normalisation on the device and batches dispatched without waiting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .runtime import backend_name, load_keras


class Forward:
    """The network's forward pass, normalisation included, dispatched without waiting.

    ``run(x, lo, scale)`` starts ``network((x - lo) / scale)`` on the device for
    a batch ``x`` (B, H, W, C) of float32 or raw integer pixels (B, Z, H, W, C for a
    3D network), with ``lo`` and ``scale`` shaped (1, 1, 1, C) float32 (one more 1), and returns a handle at once where the
    backend computes asynchronously (JAX, and TensorFlow or PyTorch on a GPU);
    ``fetch(handle)`` waits for it and returns float32 numpy (B, H, W, K); on JAX, and on
    PyTorch on a GPU (through pinned memory, `napari_unet.backend.torch_copies`), the copy
    back is queued by ``run``, so neither direction waits for the batches in flight. So the
    next batch is cut and sent while the device works on this one, raw 16-bit
    pixels cross the bus at half the bytes of float32, and the host never
    normalises. One compiled function per network and input dtype and shape. PyTorch
    runs a channels-first twin of the network with its weights
    (`napari_unet.backend.channels_first`): Keras' channels-last layout costs it a copy of
    every feature map at every layer.

    ``reduce``: a function ``reduce(ops, y, values)`` of the probabilities (Keras ops)
    compiled into the same pass, whose (smaller) result is what ``fetch`` copies back, as
    ``dtype`` (e.g. the maps labels need, `napari_unet.prediction.reduced`); ``values``
    is the float32 array given to ``run`` (thresholds: changing them compiles nothing).
    """

    def __init__(self, keras_model: Any, reduce: Any = None, dtype: Any = np.float32):
        self.keras_model = keras_model
        self.backend = backend_name()
        self.reduce, self.dtype = reduce, np.dtype(dtype)
        self._compiled = self._compile()

    def _compile(self) -> Any:
        keras = load_keras()
        km, ops = self.keras_model, keras.ops
        rank = len(km.inputs[0].shape)  # 4 for planes, 5 for volumes
        reduce = self.reduce or (lambda ops, y, values: y)

        def normalised(x, lo, scale):
            if len(x.shape) == rank - 1:  # one channel, sent without its axis (see `run`)
                x = ops.expand_dims(x, -1)
            return (ops.cast(x, "float32") - lo) / scale

        if self.backend == "jax":
            import jax

            def pure(trainable, non_trainable, x, lo, scale, values):
                y, _ = km.stateless_call(trainable, non_trainable, normalised(x, lo, scale),
                                         training=False)
                return reduce(ops, y, values)

            jitted = jax.jit(pure)
            return lambda x, lo, scale, values: jitted(
                [v.value for v in km.trainable_variables],
                [v.value for v in km.non_trainable_variables], x, lo, scale, values)
        if self.backend == "tensorflow":
            import tensorflow as tf

            xla = bool(tf.config.list_physical_devices("GPU"))
            return tf.function(
                lambda x, lo, scale, values: reduce(
                    ops, km(normalised(x, lo, scale), training=False), values),
                jit_compile=xla, reduce_retracing=True)
        if self.backend == "torch":
            import torch

            from .channels_first import channels_first
            from .torch_copies import TorchCopies

            copies = self._torch_copies = TorchCopies(km.weights[0].value.device)
            network = self.torch_network = channels_first(km)

            def eager(x, lo, scale, values):
                if x.dtype.itemsize > 1 and x.dtype.kind == "u":  # torch lacks most uint16 ops
                    x = x.astype(np.int32)
                x, lo, scale, values = (copies.to_device(a) for a in (x, lo, scale, values))
                with torch.no_grad():
                    y = reduce(ops, network(normalised(x, lo, scale)), values)
                return copies.to_host(y)

            return eager
        return lambda x, lo, scale, values: reduce(
            ops, km(normalised(x, lo, scale), training=False), values)

    def run(self, x: Any, lo: Any, scale: Any, values: Any = None) -> Any:
        # a trailing axis of length 1 makes the host->device copy 6x slower on JAX/XLA GPUs
        # (58 ms instead of 10 ms for 4096² uint16, benchmarks/transfer_layouts.py)
        values = _NO_VALUES if values is None else np.asarray(values, np.float32)
        y = self._compiled(x[..., 0] if x.shape[-1] == 1 else x, lo, scale, values)
        if self.backend == "jax":  # the copy back starts when the result is ready, not at fetch
            y.copy_to_host_async()
        return y

    def fetch(self, handle: Any) -> Any:
        if self.backend == "torch":  # a `napari_unet.backend.torch_copies.HostCopy`
            handle = self._torch_copies.wait(handle)
        return np.asarray(load_keras().ops.convert_to_numpy(handle), dtype=self.dtype)


_NO_VALUES = np.zeros(1, np.float32)  # ``values`` of a pass without a reduction


def forward_for(keras_model: Any, reduction: tuple | None = None, reduce: Any = None,
                dtype: Any = np.float32) -> Forward:
    """The `Forward` of ``keras_model`` (with ``reduce`` and ``dtype``, see `Forward`),
    made once per ``reduction`` (a hashable name of what ``reduce`` computes, not of the
    values it is run with; None: the probabilities) and kept on the model."""
    kept = keras_model.__dict__.setdefault("_napari_unet_forwards", {})
    if reduction not in kept:
        kept[reduction] = Forward(keras_model, reduce, dtype)
    return kept[reduction]
