"""JAX on a GPU: the ways to move one 4096² image in and its float32 probabilities out.

    KERAS_BACKEND=jax python benchmarks/transfer_experiment.py    (SIDE=4096 by default)

Median milliseconds of: ``device_put`` of the raw uint16 pixels; dispatching the
compiled forward pass on that device array, and on the numpy array itself; the
device->host copy by ``np.asarray``, by ``jax.device_get``, in 8 row chunks started
together with ``copy_to_host_async``, and as bfloat16 widened on the host. Each copy
reads a fresh device array (JAX caches an array's host copy). Results are in
docs/benchmarks.md.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, "src")
import jax
import jax.numpy as jnp
import numpy as np

from napari_unet import UNetConfig
from napari_unet.backend.forward import forward_for
from napari_unet.model.unet import UNetModel

side = int(os.environ.get("SIDE", "4096"))
image = np.clip(np.random.default_rng(0).normal(1000, 300, (side, side)), 0, None).astype(np.uint16)
x = image[None, ..., None]
T = {}
def clock(name, fn):
    t = time.perf_counter(); out = fn(); T.setdefault(name, []).append((time.perf_counter() - t) * 1e3); return out
model = UNetModel.new(UNetConfig(precision="float32"))
fw = forward_for(model.keras_model)
lo = np.zeros((1,1,1,1), np.float32); sc = np.ones((1,1,1,1), np.float32)
out = np.empty((1, side, side, 1), np.float32)
cast16 = jax.jit(lambda y: y.astype(jnp.bfloat16))
def chunks(y, n=8):
    s = side // n
    parts = [y[:, i*s:(i+1)*s] for i in range(n)]
    for p in parts: p.copy_to_host_async()
    for i, p in enumerate(parts): out[:, i*s:(i+1)*s] = np.asarray(p)
    return out
for i in range(6):
    xd = clock("device_put uint16", lambda: jax.device_put(x).block_until_ready())
    h = clock("dispatch on device array", lambda: fw.run(xd, lo, sc))
    clock("wait", lambda: h.block_until_ready())
    h2 = clock("dispatch with numpy arg", lambda: fw.run(x, lo, sc)); h2.block_until_ready()
    f = h + 0; f.block_until_ready()
    clock("D2H np.asarray", lambda: np.asarray(f))
    f = h + 0; f.block_until_ready()
    clock("D2H jax.device_get", lambda: jax.device_get(f))
    f = h + 0; f.block_until_ready()
    clock("D2H 8 async chunks", lambda: chunks(f))
    f = h + 0; f.block_until_ready()
    clock("D2H bf16 + host astype", lambda: np.asarray(cast16(f)).astype(np.float32))
    if i == 0: T.clear()
for k, v in T.items(): print(f"  {k:<32} {statistics.median(v):8.1f} ms")
