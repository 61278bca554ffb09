"""What a U-Net costs, from its `UNetConfig` alone: size, work, reach and memory.

Plain arithmetic, no Keras, so the widgets can show it without loading
TensorFlow and prediction can plan its tiles before building anything:
parameters, FLOP per megapixel, receptive field and the halo a tile needs,
memory to train and to predict, and the tile side that fits a memory budget.
"""

from __future__ import annotations

import math
import os

from .config import UNetConfig

__all__ = ["round_up", "count_parameters", "flops_per_megapixel", "receptive_field", "halo",
           "training_memory_bytes", "inference_bytes_per_pixel", "available_memory",
           "default_memory_budget", "auto_tile_size"]


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return int(math.ceil(n / multiple) * multiple)


def _conv_params(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def count_parameters(config: UNetConfig) -> int:
    """Number of weights (trainable and BatchNorm statistics) of ``build_unet(config)``."""
    ks, bn = config.kernel_size, config.batch_norm

    def block(c_in: int, c_out: int) -> int:
        n = _conv_params(ks, c_in, c_out, not bn) + _conv_params(ks, c_out, c_out, not bn)
        return n + (2 * 4 * c_out if bn else 0)  # gamma, beta, moving mean, moving var

    total, c_in = 0, config.in_channels
    for level in range(config.depth):
        total += block(c_in, config.filters(level))
        c_in = config.filters(level)
    total += block(c_in, config.filters(config.depth))
    for level in range(config.depth - 1, -1, -1):
        c = config.filters(level)
        total += _conv_params(ks, config.filters(level + 1), c)  # Conv2DTranspose
        total += block(2 * c, c)
    total += _conv_params(1, config.filters(0), config.n_classes)
    return total


def flops_per_megapixel(config: UNetConfig) -> float:
    """Floating-point operations (2 per multiply-add) of one forward pass per 10**6 input pixels."""
    k2 = config.kernel_size**2
    macs, c_in = 0.0, config.in_channels
    for level in range(config.depth + 1):  # encoder levels and bottleneck
        c, area = config.filters(level), 4.0**-level
        macs += area * k2 * (c_in * c + c * c)
        c_in = c
    for level in range(config.depth - 1, -1, -1):
        c, area = config.filters(level), 4.0**-level
        macs += (area / 4) * k2 * config.filters(level + 1) * c  # transposed conv, per input pixel
        macs += area * k2 * (2 * c * c + c * c)
    macs += config.filters(0) * config.n_classes
    return 2 * macs * 1e6


def _one_side_extent(config: UNetConfig) -> tuple[int, int]:
    """(total span - 1, largest one-sided reach) of an output pixel, in input pixels."""
    r = (config.kernel_size - 1) // 2
    t = math.ceil(config.kernel_size / 2) - 1  # extra coarse pixels a stride-2 transposed conv reads
    span = side = 0
    for level in range(config.depth):
        scale = 2**level
        span += 2 * (2 * r * scale) + scale  # two encoder convs + 2x2 pooling
        side += 2 * r * scale + scale
    scale = 2**config.depth
    span += 2 * 2 * r * scale
    side += 2 * r * scale
    for level in range(config.depth - 1, -1, -1):
        scale = 2**level
        span += 2 * t * scale + 2 * (2 * r * scale)  # transposed conv + two decoder convs
        side += 2 * t * scale + 2 * r * scale
    return span, side


def receptive_field(config: UNetConfig) -> int:
    """Width in input pixels of the window that can influence one output pixel.

    Computed layer by layer: a k x k convolution at level l widens it by
    (k - 1) * 2**l, a 2x2 pooling by 2**l and a stride-2 transposed convolution
    by (ceil(k/2) - 1) * 2**(l + 1). The default U-Net gives 230 px.
    """
    span, _ = _one_side_extent(config)
    return span + 1


def halo(config: UNetConfig) -> int:
    """Context in pixels to add on each side of a tile so its centre is exact.

    The largest one-sided reach of the receptive field (pooling and transposed
    convolutions are not centred, so this is more than half the field), rounded
    up to a multiple of ``2**depth`` so tile origins stay on the pooling grid.
    """
    _, side = _one_side_extent(config)
    m = config.size_multiple
    return int(math.ceil(side / m) * m)


def training_memory_bytes(config: UNetConfig, patch_size: int, batch_size: int) -> int:
    """Rough memory needed to train on ``batch_size`` patches of ``patch_size**2`` pixels.

    Counts float32 activations kept for the backward pass (each layer output,
    about twice for gradients) plus weights, gradients and the two Adam moments.
    An estimate for choosing patch and batch size, not a guarantee.
    """
    px = batch_size * patch_size * patch_size
    act = 0.0
    for level in range(config.depth + 1):
        c, area = config.filters(level), 4.0**-level
        per_conv = 3 if config.batch_norm else 1
        act += area * c * (2 * per_conv + 1)  # two convs (+BN/ReLU), pool/dropout output
    for level in range(config.depth):
        c, area = config.filters(level), 4.0**-level
        act += area * c * (1 + 2 + 2 + 2 * (3 if config.batch_norm else 1))
    act += config.in_channels + 2 * config.n_classes
    activations = 4 * px * act * 2
    weights = 4 * count_parameters(config) * 4
    return int(activations + weights)


# Peak bytes per window pixel of the default U-Net, divided by its channel sum below
# (157): on CPU (TensorFlow) 374 B/px for a 2048x2048 pass (benchmarks/bench_predict.py)
# -> 2.4, rounded up; on an H100 814 B/px (PyTorch, measured) and at most 844 B/px (JAX,
# the process peak) for a 4096x4096 pass (benchmarks/bench_devices.py) -> 5.4, rounded up.
_BYTES_PER_CHANNEL_PIXEL = {False: 2.5, True: 5.5}


def inference_bytes_per_pixel(config: UNetConfig, accelerator: bool = False) -> float:
    """Estimated peak memory in bytes per input pixel of one window during inference,
    on a CPU or (``accelerator``) on a GPU, whose libraries keep more buffers alive."""
    channels = config.in_channels + max(1, config.n_classes)
    for level in range(config.depth + 1):
        channels += 5 * config.filters(level) / 4**level
    return _BYTES_PER_CHANNEL_PIXEL[bool(accelerator)] * channels


def available_memory() -> int:
    """Bytes of memory available to this process now."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def default_memory_budget() -> int:
    """Bytes the network's activations may use: a quarter of available memory, at most 1 GiB."""
    return min(available_memory() // 4, 1 << 30)


def auto_tile_size(config: UNetConfig, memory_budget: int | None = None,
                   shape: tuple[int, int] | None = None, accelerator: bool = False) -> int:
    """Window side in pixels (a multiple of ``2**depth``) for tiled prediction with ``config``.

    The window must fit the memory budget (default: a quarter of the available
    memory, at most 1 GiB). Without ``shape`` it is the largest that fits; with
    the (Y, X) ``shape`` of the image it is the one, among those that fit, that
    computes the fewest pixels in total (halos included) for that image.
    ``accelerator``: the budget is GPU memory (see `inference_bytes_per_pixel`).
    """
    if memory_budget is None:
        memory_budget = default_memory_budget()
    m, context = config.size_multiple, halo(config)
    smallest = round_up(4 * context, m)
    largest = int(math.sqrt(memory_budget / inference_bytes_per_pixel(config, accelerator)))
    largest = max(largest // m * m, smallest)
    if shape is None:
        return largest
    hp, wp = round_up(shape[0], m), round_up(shape[1], m)

    def cost(window: int) -> int:
        n = [1 if side <= window else math.ceil(side / (window - 2 * context)) for side in (hp, wp)]
        return n[0] * n[1] * min(window, hp) * min(window, wp)

    candidates = range(largest, smallest - 1, -m)
    return min(candidates, key=lambda window: (cost(window), -window))
