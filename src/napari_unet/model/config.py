"""Architecture configuration of the U-Net.

`UNetConfig` holds every architecture knob. Its defaults reproduce the classic
Keras "start_neurons" U-Net (docs/architecture.md) exactly (2,158,417 parameters
for one input channel and one output); ``ndim=3`` builds the same topology in 3D for
volumes (`UNetConfig.for_spacing` chooses its anisotropic levels from the voxel size,
as nnU-Net does). It has no dependency on Keras, so it can be created, validated and
serialised without importing TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

from ..backend.devices import PRECISIONS
from ..common.checks import check_switch, check_whole, is_real

MAX_DEPTH = 6
ANISOTROPY = 2.0  # an axis more than this many times coarser than the finest is not pooled


@dataclass(frozen=True)
class UNetConfig:
    """Every architecture knob of the U-Net.

    Attributes
    ----------
    start_neurons : int
        Filters of the first encoder level; level ``k`` has ``start_neurons * 2**k``.
    depth : int
        Number of pooling steps (1..6). Input height and width must be multiples
        of ``2**depth``.
    dropout_first : float
        Dropout after the first max-pooling, in [0, 1).
    dropout : float
        Dropout after every other pooling and after each decoder concatenation.
    batch_norm : bool
        Add BatchNormalization after each convolution (before its ReLU).
    in_channels : int
        Channels of the input image (1 for grey, 3 for RGB, ...).
    n_classes : int
        1 gives a single sigmoid foreground output; >= 2 gives a softmax over
        ``n_classes`` classes (class 0 is background).
    kernel_size : int
        Odd size of the square convolution kernels.
    precision : str
        Arithmetic of the layers, not of the stored weights (always float32):
        ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"`` (Keras mixed
        precision: float32 weights and output layer, 16-bit compute), or
        ``"auto"``: mixed bfloat16 on GPUs with bfloat16 matrix units, float32
        elsewhere (resolved where the network is built).
    ndim : int
        2: the network takes (Y, X) planes; 3: (Z, Y, X) volumes, with Conv3D,
        MaxPooling3D and Conv3DTranspose layers in the same places.
    z_unpooled_levels : int
        3D only: the first levels (0..depth) whose pooling leaves Z alone and whose
        kernels are 1 x k x k (the levels of a stack whose Z step is more than
        `ANISOTROPY` times its pixel size, until pooling in Y and X catches up;
        `for_spacing` counts them). Their decoder partners upsample only Y and X.
    """

    start_neurons: int = 16
    depth: int = 4
    dropout_first: float = 0.25
    dropout: float = 0.5
    batch_norm: bool = False
    in_channels: int = 1
    n_classes: int = 1
    kernel_size: int = 3
    precision: str = "auto"
    ndim: int = 2
    z_unpooled_levels: int = 0

    def __post_init__(self) -> None:
        self.validate()
        # numpy scalars (np.int64(4), np.float32(0.5), np.bool_) are stored as plain Python values
        for f in fields(self):
            kind = {"int": int, "float": float, "bool": bool, "str": str}[f.type]
            object.__setattr__(self, f.name, kind(getattr(self, f.name)))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid value and what is allowed."""
        check_whole("start_neurons", self.start_neurons, 1, 1024)
        check_whole("depth", self.depth, 1, MAX_DEPTH)
        check_whole("in_channels", self.in_channels, 1, 64)
        check_whole("n_classes", self.n_classes, 1, 255)
        check_whole("kernel_size", self.kernel_size, 1, 15)
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd (1, 3, 5, ...) so 'same' padding is "
                f"symmetric; got {self.kernel_size}."
            )
        for name in ("dropout_first", "dropout"):
            value = getattr(self, name)
            if not is_real(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a number in [0, 1); got {value!r}.")
        check_switch("batch_norm", self.batch_norm)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}.")
        if self.ndim not in (2, 3) or isinstance(self.ndim, bool):
            raise ValueError(f"ndim must be 2 (planes) or 3 (volumes); got {self.ndim!r}.")
        check_whole("z_unpooled_levels", self.z_unpooled_levels, 0, self.depth)
        if self.ndim == 2 and self.z_unpooled_levels:
            raise ValueError("z_unpooled_levels is for 3D networks (ndim=3); a 2D network "
                             f"has no Z to leave alone; got {self.z_unpooled_levels}.")

    @classmethod
    def for_spacing(cls, spacing: Mapping[str, float] | Sequence[float],
                    **options: Any) -> UNetConfig:
        """A 3D config for volumes of voxel size ``spacing`` (``{"Z": 2.0, "Y": 0.5,
        "X": 0.5}`` or ``(z, y, x)``, one unit), the other fields from ``options``.

        nnU-Net's rule: a level whose Z step is more than `ANISOTROPY` times its Y/X
        step neither pools nor convolves along Z, until pooling in Y and X catches up
        (a Z step 3x the pixel size: the first level; 5x: the first two)."""
        sizes = ([spacing.get(a, 1.0) for a in "ZYX"] if isinstance(spacing, Mapping)
                 else list(spacing))
        if len(sizes) != 3 or not all(is_real(v) and 0 < float(v) < float("inf")
                                      for v in sizes):
            raise ValueError(f"spacing must give three positive voxel sizes (Z, Y, X); got "
                             f"{spacing!r}.")
        depth = options.get("depth", cls.depth)
        ratio, levels = float(sizes[0]) / min(float(sizes[1]), float(sizes[2])), 0
        while levels < depth and ratio / 2**levels > ANISOTROPY:
            levels += 1
        return cls(**{**options, "ndim": 3, "z_unpooled_levels": levels})

    def pools_z(self, level: int) -> bool:
        """Whether the pooling after encoder ``level`` (0-based) halves Z (3D only)."""
        return self.ndim == 3 and level >= self.z_unpooled_levels

    def kernel(self, level: int) -> int | tuple[int, ...]:
        """The convolution kernel at ``level`` (0 = full resolution, depth = bottleneck):
        ``kernel_size`` in 2D, ``(kz, k, k)`` in 3D (kz 1 on the unpooled levels)."""
        k = self.kernel_size
        if self.ndim == 2:
            return k
        return (1 if level < self.z_unpooled_levels else k, k, k)

    def pool(self, level: int) -> int | tuple[int, ...]:
        """The pooling (and the matching upsampling) after encoder ``level``."""
        return 2 if self.ndim == 2 else (2 if self.pools_z(level) else 1, 2, 2)

    @property
    def size_multiples(self) -> tuple[int, ...]:
        """Input sides must be multiples of these: ``(Y, X)`` or ``(Z, Y, X)``."""
        m = 2**self.depth
        return (m, m) if self.ndim == 2 else (2 ** (self.depth - self.z_unpooled_levels), m, m)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def filters(self, level: int) -> int:
        """Filters of encoder/decoder ``level`` (0 = full resolution, depth = bottleneck)."""
        return self.start_neurons * 2**level

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Create a config from a dict; unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"A U-Net config must be a JSON object; got {type(data).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown U-Net config keys {unknown}; allowed keys are {sorted(known)}."
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> UNetConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"U-Net config is not valid JSON: {err}") from err
        return cls.from_dict(data)


