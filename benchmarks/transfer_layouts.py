"""JAX on a GPU: host<->device copies of a 4096² image by array shape (layout check). SIDE=4096."""
import os
import statistics
import sys
import time

sys.path.insert(0, "src")
import jax
import jax.numpy as jnp
import numpy as np

side = int(os.environ.get("SIDE", "4096"))
image = np.clip(np.random.default_rng(0).normal(1000, 300, (side, side)), 0, None).astype(np.uint16)
T = {}
def clock(name, fn):
    t = time.perf_counter(); out = fn(); T.setdefault(name, []).append((time.perf_counter() - t) * 1e3); return out
flat = jax.jit(lambda y: y.reshape(y.shape[0] * y.shape[1], -1))
make4 = jax.jit(lambda x: (x.astype(jnp.float32)[None, ..., None] / 7.0))
make3 = jax.jit(lambda x: (x.astype(jnp.float32)[None] / 7.0))
for i in range(6):
    clock("H2D uint16 (H,W)", lambda: jax.device_put(image).block_until_ready())
    clock("H2D uint16 (1,H,W,1)", lambda: jax.device_put(image[None, ..., None]).block_until_ready())
    clock("H2D uint16 (1,H,W)", lambda: jax.device_put(image[None]).block_until_ready())
    d = jax.device_put(image)
    y4 = make4(d); y4.block_until_ready()
    clock("D2H f32 (1,H,W,1)", lambda: np.asarray(y4))
    y4 = make4(d); y4.block_until_ready()
    y2 = flat(y4); y2.block_until_ready()
    clock("D2H f32 (H,W) after reshape", lambda: np.asarray(y2))
    y3 = make3(d); y3.block_until_ready()
    clock("D2H f32 (1,H,W)", lambda: np.asarray(y3))
    if i == 0: T.clear()
for k, v in T.items(): print(f"  {k:<32} {statistics.median(v):8.1f} ms")
