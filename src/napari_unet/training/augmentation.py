"""Random changes to training patches that real images also show.

`Augmentation` says which transforms run; `Augmentation.apply` changes a batch of
normalised float32 image patches ``(B, P, P, C)`` (a 3D network's ``(B, D, P, P, C)``:
rotations and flips in the plane, flips along Z, one in-plane deformation for all
planes) and their targets ``(B, P, P, 1)``
(class index or ``IGNORE``; a second channel, if any, is a pixel weight that moves
with them) and returns new arrays:

* ``flips``: one of the 8 flips / 90-degree rotations (image and target together);
* ``intensity``: brightness scaled by 0.75-1.33 and shifted by +-0.1 (image only);
* ``gamma``: a gamma of 0.7-1.5 on the patch's own range (image only);
* ``noise``: Gaussian noise with a standard deviation up to 0.05 (image only);
* ``blur``: a Gaussian blur of up to 1 px (image only, defocus);
* ``elastic``: the U-Net paper's deformation, random displacements on a coarse 3 x 3
  grid with a 10 px standard deviation, smoothly interpolated (image linearly, target
  by nearest neighbour so class indices and ``IGNORE`` stay exact).

The photometric transforms and the deformation each run on a sample with
``probability``. No Keras and no Qt here.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..common.checks import check_switch, is_real

__all__ = ["Augmentation"]


@dataclass(frozen=True)
class Augmentation:
    """Which random transforms training patches get (see the module docstring)."""

    flips: bool = True
    intensity: bool = True
    gamma: bool = True
    noise: bool = True
    blur: bool = False
    elastic: bool = True
    probability: float = 0.5

    @classmethod
    def switches(cls) -> list[str]:
        """The names of the on/off transforms (every field but ``probability``)."""
        return [f.name for f in fields(cls) if f.name != "probability"]

    def __post_init__(self) -> None:
        for name in self.switches():
            object.__setattr__(self, name, check_switch(name, getattr(self, name)))
        if not is_real(self.probability) or not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"augmentation probability must be in [0, 1]; got "
                             f"{self.probability!r}.")

    @classmethod
    def from_setting(cls, value: Any) -> Augmentation:
        """``True``: the defaults; ``False``: none; a dict of fields; or an `Augmentation`."""
        if isinstance(value, cls):
            return value
        if isinstance(value, (bool, np.bool_)):
            return cls() if value else cls(**dict.fromkeys(cls.switches(), False))
        if isinstance(value, dict):
            unknown = sorted(set(value) - {f.name for f in fields(cls)})
            if unknown:
                raise ValueError(f"Unknown augmentations {unknown}; known: "
                                 f"{[f.name for f in fields(cls)]}.")
            return cls(**value)
        raise ValueError(f"augment must be True, False, a dict such as {{'elastic': True}} or an "
                         f"Augmentation; got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def any(self) -> bool:
        return any(getattr(self, name) for name in self.switches())

    def apply(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
        """New ``(x, y)``: each sample of the batch transformed with draws from ``rng``."""
        x, y = x.copy(), y.copy()
        for i in range(x.shape[0]):
            x[i], y[i] = self._sample(x[i], y[i], rng)
        return x, y

    def _sample(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
        chance = lambda: rng.random() < self.probability  # noqa: E731
        volume = x.ndim == 4  # (Z, P, Q, C): a 3D network's patch
        yx = (1, 2) if volume else (0, 1)
        if self.flips:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            x, y = np.rot90(x, k, axes=yx), np.rot90(y, k, axes=yx)
            if flip:
                x, y = np.flip(x, yx[1]), np.flip(y, yx[1])
            if volume and rng.integers(2):
                x, y = x[::-1], y[::-1]
        if self.elastic and chance():
            x, y = elastic_deformation(x, y, rng)
        if self.intensity and chance():
            x = x * rng.uniform(0.75, 1.33) + rng.uniform(-0.1, 0.1)
        if self.gamma and chance():
            lo, hi = float(x.min()), float(x.max())
            if hi - lo > 1e-6:
                x = lo + (hi - lo) * ((x - lo) / (hi - lo)) ** rng.uniform(0.7, 1.5)
        if self.blur and chance():
            x = ndi.gaussian_filter(x, (0,) * volume + (rng.uniform(0.3, 1.0),) * 2 + (0,))
        if self.noise and chance():
            x = x + rng.normal(0.0, rng.uniform(0.0, 0.05), x.shape)
        return x.astype(np.float32, copy=False), y


def elastic_deformation(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                        sigma: float = 10.0, grid: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Deform ``x`` (P, Q, C) and ``y`` (P, Q, K) by one smooth random field: displacements
    drawn on a ``grid`` x ``grid`` lattice with standard deviation ``sigma`` px, upsampled
    by cubic splines. Returns new arrays; ``y`` is sampled by nearest neighbour. A
    volume's (Z, P, Q, C) planes all get the same in-plane field."""
    if x.ndim == 4:
        seed = int(rng.integers(2**63))  # one field: every plane draws the same
        planes = [elastic_deformation(xz, yz, np.random.default_rng(seed), sigma, grid)
                  for xz, yz in zip(x, y)]
        return np.stack([p[0] for p in planes]), np.stack([p[1] for p in planes])
    shape = x.shape[:2]
    coarse = rng.normal(0.0, sigma, (2, grid, grid))
    rows_up, cols_up = _upsampling(shape[0], grid), _upsampling(shape[1], grid)
    shift = [rows_up @ c @ cols_up.T for c in coarse]
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    coords = np.array([rows + shift[0], cols + shift[1]])
    warped = np.stack([ndi.map_coordinates(x[..., c], coords, order=1, mode="mirror")
                       for c in range(x.shape[-1])], axis=-1)
    target = np.stack([ndi.map_coordinates(y[..., k], coords, order=0, mode="mirror")
                       for k in range(y.shape[-1])], axis=-1)
    return warped.astype(np.float32), target.astype(y.dtype)


@functools.lru_cache(maxsize=16)
def _upsampling(size: int, grid: int) -> np.ndarray:
    """``(size, grid)`` matrix ``U`` with ``U @ c`` the cubic-spline zoom of a length-``grid``
    vector ``c`` to ``size`` samples (``ndi.zoom``, order 3, ``mode="nearest"``,
    ``grid_mode=True``). The zoom is linear and separable, so a 2D field is ``U_r @ C @ U_c.T``:
    one small product instead of a spline filter per field (half of a batch's augmentation)."""
    eye = np.eye(grid)
    columns = [ndi.zoom(e, size / grid, order=3, mode="nearest", grid_mode=True)[:size]
               for e in eye]
    matrix = np.stack(columns, axis=1)
    matrix.setflags(write=False)  # cached and shared by the patch threads
    return matrix
