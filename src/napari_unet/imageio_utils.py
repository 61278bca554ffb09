"""Reading and writing the image files the CLI works with (TIFF and PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


def read_image(path: str | Path) -> np.ndarray:
    """Read a TIFF or PNG file into a numpy array; raises ``ValueError`` for other files."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Image file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        if suffix == ".png":
            import imageio.v3 as iio

            return np.asarray(iio.imread(path))
    except Exception as err:  # noqa: BLE001 - any reader failure means an unreadable file
        raise ValueError(f"Could not read {str(path)!r}: {err}") from err
    raise ValueError(f"{path.name!r}: only TIFF (.tif, .tiff) and PNG (.png) files are supported.")


def write_image(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as TIFF (any dtype) or PNG (uint8/uint16 2D or RGB); returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, array, compression="zlib")
    elif suffix == ".png":
        import imageio.v3 as iio

        iio.imwrite(path, array)
    else:
        raise ValueError(f"{path.name!r}: write .tif, .tiff or .png files.")
    return path


def list_pairs(images_dir: str | Path, masks_dir: str | Path) -> list[tuple[Path, Path]]:
    """Match image and mask files by name (ignoring the suffix); raises if none or unmatched."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d, what in ((images_dir, "--images"), (masks_dir, "--masks")):
        if not d.is_dir():
            raise ValueError(f"{what} folder {str(d)!r} does not exist.")
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise ValueError(f"No .tif/.tiff/.png images in {str(images_dir)!r}.")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise ValueError(
            f"No mask for image(s) {missing[:5]} in {str(masks_dir)!r}; masks must have the "
            "same file name as their image."
        )
    return [(images[k], masks[k]) for k in sorted(images)]


def overlay(image: np.ndarray, labels: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 picture of a 2D image with predicted outlines (yellow) and truth (cyan)."""
    from skimage.segmentation import find_boundaries

    img = image.astype(np.float32)
    lo, hi = np.percentile(img, [1, 99.8])
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.stack([grey] * 3, axis=-1)
    if truth is not None:
        rgb[find_boundaries(truth, mode="inner")] = (0.0, 0.9, 0.9)
    rgb[find_boundaries(labels, mode="inner")] = (1.0, 0.85, 0.0)
    return (rgb * 255).astype(np.uint8)
