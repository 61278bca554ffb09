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
           "halos", "level_fractions", "auto_z_window", "volume_patch_shape",
           "training_memory_bytes", "inference_bytes_per_pixel", "available_memory",
           "default_memory_budget", "auto_tile_size"]


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return int(math.ceil(n / multiple) * multiple)


def _conv_params(kernel: int | tuple[int, ...], c_in: int, c_out: int, bias: bool = True) -> int:
    volume = kernel**2 if isinstance(kernel, int) else math.prod(kernel)
    return volume * c_in * c_out + (c_out if bias else 0)


def level_fractions(config: UNetConfig) -> list[float]:
    """Pixels (voxels) of each level 0..depth per input pixel: 4**-level in 2D; in 3D
    also halved for each pooling so far that halved Z."""
    out = [1.0]
    for level in range(config.depth):
        out.append(out[-1] / (8 if config.pools_z(level) else 4))
    return out


def count_parameters(config: UNetConfig) -> int:
    """Number of weights (trainable and BatchNorm statistics) of ``build_unet(config)``."""
    bn = config.batch_norm

    def block(level: int, c_in: int, c_out: int) -> int:
        k = config.kernel(level)
        n = _conv_params(k, c_in, c_out, not bn) + _conv_params(k, c_out, c_out, not bn)
        return n + (2 * 4 * c_out if bn else 0)  # gamma, beta, moving mean, moving var

    total, c_in = 0, config.in_channels
    for level in range(config.depth):
        total += block(level, c_in, config.filters(level))
        c_in = config.filters(level)
    total += block(config.depth, c_in, config.filters(config.depth))
    for level in range(config.depth - 1, -1, -1):
        c = config.filters(level)
        total += _conv_params(config.kernel(level), config.filters(level + 1), c)  # transposed
        total += block(level, 2 * c, c)
    total += _conv_params(1 if config.ndim == 2 else (1, 1, 1), config.filters(0),
                          config.n_classes)
    return total


def flops_per_megapixel(config: UNetConfig) -> float:
    """Floating-point operations (2 per multiply-add) of one forward pass per 10**6 input
    pixels (voxels, for a 3D network)."""
    def volume(level: int) -> int:
        k = config.kernel(level)
        return k * k if isinstance(k, int) else math.prod(k)

    fraction = level_fractions(config)
    macs, c_in = 0.0, config.in_channels
    for level in range(config.depth + 1):  # encoder levels and bottleneck
        c = config.filters(level)
        macs += fraction[level] * volume(level) * (c_in * c + c * c)
        c_in = c
    for level in range(config.depth - 1, -1, -1):
        c = config.filters(level)
        macs += fraction[level + 1] * volume(level) * config.filters(level + 1) * c  # transposed
        macs += fraction[level] * volume(level) * (2 * c * c + c * c)
    macs += config.filters(0) * config.n_classes
    return 2 * macs * 1e6


def _one_side_extent(config: UNetConfig, axis: str = "Y") -> tuple[int, int]:
    """(total span - 1, largest one-sided reach) of an output pixel along ``axis`` (Z, Y or
    X), in input pixels."""
    along_z = axis == "Z"
    if along_z and config.ndim == 2:
        raise ValueError("a 2D network has no Z axis.")

    def reach(level: int) -> tuple[int, int]:
        """Kernel radius and the extra coarse pixels a strided transposed conv reads."""
        k = config.kernel(level)
        k = k if isinstance(k, int) else k[0 if along_z else -1]
        return (k - 1) // 2, math.ceil(k / 2) - 1

    pooled = [not along_z or config.pools_z(level) for level in range(config.depth)]
    scale = [1]
    for level in range(config.depth):
        scale.append(scale[-1] * (2 if pooled[level] else 1))
    span = side = 0
    for level in range(config.depth):
        r, s = reach(level)[0], scale[level]
        span += 2 * (2 * r * s) + (s if pooled[level] else 0)  # two encoder convs + pooling
        side += 2 * r * s + (s if pooled[level] else 0)
    r, s = reach(config.depth)[0], scale[config.depth]
    span += 2 * 2 * r * s
    side += 2 * r * s
    for level in range(config.depth - 1, -1, -1):
        (r, t), s = reach(level), scale[level]
        up = t * scale[level + 1] if pooled[level] else 0  # transposed conv
        span += up + 2 * (2 * r * s)  # and two decoder convs
        side += up + 2 * r * s
    return span, side


def receptive_field(config: UNetConfig, axis: str = "Y") -> int:
    """Width in input pixels along ``axis`` (Z only for 3D networks; Y and X agree) of the
    window that can influence one output pixel.

    Computed layer by layer: a k x k convolution at level l widens it by
    (k - 1) * 2**l, a 2x2 pooling by 2**l and a stride-2 transposed convolution
    by (ceil(k/2) - 1) * 2**(l + 1) (along Z of a 3D network, l counts only the levels
    that pooled Z, and the 1 x k x k levels add nothing). The default U-Net gives 230 px.
    """
    span, _ = _one_side_extent(config, axis)
    return span + 1


def halo(config: UNetConfig, axis: str = "Y") -> int:
    """Context in pixels to add on each side of a tile along ``axis`` so its centre is exact.

    The largest one-sided reach of the receptive field (pooling and transposed
    convolutions are not centred, so this is more than half the field), rounded
    up to the size multiple of that axis (``2**depth`` for Y and X) so tile origins stay
    on the pooling grid.
    """
    _, side = _one_side_extent(config, axis)
    m = config.size_multiples[0] if axis == "Z" else config.size_multiple
    return int(math.ceil(side / m) * m)


def halos(config: UNetConfig) -> tuple[int, ...]:
    """`halo` along each spatial axis: ``(Y, X)`` or ``(Z, Y, X)``."""
    return tuple(halo(config, a) for a in ("YX" if config.ndim == 2 else "ZYX"))


def training_memory_bytes(config: UNetConfig, patch_size: int | tuple[int, ...],
                          batch_size: int) -> int:
    """Rough memory needed to train on ``batch_size`` patches of ``patch_size`` (a side,
    squared in 2D and cubed in 3D, or the patch shape).

    Counts float32 activations kept for the backward pass (each layer output,
    about twice for gradients) plus weights, gradients and the two Adam moments.
    An estimate for choosing patch and batch size, not a guarantee.
    """
    shape = ((patch_size,) * config.ndim if isinstance(patch_size, (int, float))
             else tuple(patch_size))
    px = batch_size * math.prod(int(n) for n in shape)
    fraction = level_fractions(config)
    act = 0.0
    for level in range(config.depth + 1):
        c = config.filters(level)
        per_conv = 3 if config.batch_norm else 1
        act += fraction[level] * c * (2 * per_conv + 1)  # two convs (+BN/ReLU), pool/dropout
    for level in range(config.depth):
        c = config.filters(level)
        act += fraction[level] * c * (1 + 2 + 2 + 2 * (3 if config.batch_norm else 1))
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
    """Estimated peak memory in bytes per input pixel (voxel, for a 3D network) of one
    window during inference, on a CPU or (``accelerator``) on a GPU, whose libraries keep
    more buffers alive."""
    channels = config.in_channels + max(1, config.n_classes)
    for level, fraction in enumerate(level_fractions(config)):
        channels += 5 * config.filters(level) * fraction
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
    computes the fewest pixels in total (halos included) for that image. For a 3D
    network the side is that of Y and X, ``shape`` is (Z, Y, X) and each window takes
    as many planes as fit (`auto_z_window`).
    ``accelerator``: the budget is GPU memory (see `inference_bytes_per_pixel`).
    """
    if memory_budget is None:
        memory_budget = default_memory_budget()
    if config.ndim == 3:
        return _auto_tile_size_3d(config, memory_budget, shape, accelerator)
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


def auto_z_window(config: UNetConfig, memory_budget: int, padded: tuple[int, int, int],
                  tile_size: int, accelerator: bool = False) -> int:
    """Planes per window of a 3D network over a volume of ``padded`` (Z, Y, X) shape
    with windows ``tile_size`` px in Y and X: the whole Z when it fits
    ``memory_budget``, else as many as fit (a multiple of Z's size multiple), never fewer
    than twice Z's halo plus one step."""
    mz, hz = config.size_multiples[0], halo(config, "Z")
    smallest = 2 * hz + mz
    area = min(tile_size, padded[1]) * min(tile_size, padded[2])
    fits = int(memory_budget / (inference_bytes_per_pixel(config, accelerator) * area))
    if padded[0] <= fits:
        return max(padded[0], smallest)
    return max(smallest, fits // mz * mz)


def _auto_tile_size_3d(config: UNetConfig, memory_budget: int,
                       shape: tuple[int, ...] | None, accelerator: bool) -> int:
    """`auto_tile_size` of a 3D network: the Y/X side whose windows (with the planes
    `auto_z_window` gives them) compute the fewest voxels over a (Z, Y, X) ``shape``."""
    m, context = config.size_multiple, halo(config)
    mz, hz = config.size_multiples[0], halo(config, "Z")
    smallest = round_up(4 * context, m)
    planes = 2 * hz + mz if shape is None else min(2 * hz + mz, round_up(shape[0], mz))
    per_plane = memory_budget / (inference_bytes_per_pixel(config, accelerator) * planes)
    largest = max(int(math.sqrt(per_plane)) // m * m, smallest)
    if shape is None:
        return largest
    padded = (round_up(shape[0], mz), round_up(shape[1], m), round_up(shape[2], m))

    def cost(side: int) -> int:
        windows = (auto_z_window(config, memory_budget, padded, side, accelerator), side, side)
        total = 1
        for n, w, h in zip(padded, windows, (hz, context, context)):
            total *= (1 if n <= w else math.ceil(n / (w - 2 * h))) * min(w, n)
        return total

    candidates = range(min(largest, max(smallest, max(padded[1:]))), smallest - 1, -m)
    return min(candidates, key=lambda side: (cost(side), -side))


def volume_patch_shape(config: UNetConfig, patch_size: int, depth: int) -> tuple[int, int, int]:
    """``(D, P, P)`` training patches of a 3D network: ``patch_size`` in Y and X and as many
    planes as cover about the same distance (fewer on the levels that leave a coarse Z
    alone), on Z's size multiple, at most the deepest volume's ``depth`` rounded up."""
    mz = config.size_multiples[0]
    planes = max(mz, math.ceil(patch_size / 2**config.z_unpooled_levels / mz) * mz)
    return min(planes, math.ceil(depth / mz) * mz), patch_size, patch_size
