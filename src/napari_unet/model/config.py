"""Architecture configuration of the U-Net.

`UNetConfig` holds every architecture knob. Its defaults reproduce the classic
Keras "start_neurons" U-Net (docs/architecture.md) exactly (2,158,417 parameters
for one input channel and one output). It has no dependency on Keras, so it can
be created, validated and serialised without importing TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..backend.devices import PRECISIONS
from ..common.checks import check_switch, check_whole, is_real

MAX_DEPTH = 6


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


