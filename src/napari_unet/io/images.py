"""Reading and writing the image files the CLI works with (TIFF, PNG, NIfTI), with their
axes and pixel sizes (`napari_unet.io.metadata.ImageMeta`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..common.log import logger
from .metadata import ImageMeta
from .outputs import atomic_paths
from .nifti import NIFTI_SUFFIXES, nifti_header, read_nifti, write_nifti
from .tiff import read_tiff, tiff_header, write_tiff
from .zarr import is_zarr, open_zarr_image

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", *NIFTI_SUFFIXES)


def image_suffix(path: str | Path) -> str:
    """The suffix that says an image file's format, lower case: ``".nii.gz"`` for a
    gzip-compressed NIfTI file, ``".ome.zarr"`` for OME-Zarr, else the last suffix."""
    name = Path(path).name.lower().rstrip("/\\")
    double = next((s for s in (".nii.gz", ".ome.zarr") if name.endswith(s)), None)
    return double or Path(name).suffix


def is_image(path: Path) -> bool:
    """Whether ``path`` is an image this package reads: a TIFF, PNG or NIfTI file, or a
    ``.zarr`` folder (a zarr array or an OME-Zarr image)."""
    return (path.is_file() and image_suffix(path) in IMAGE_SUFFIXES) or \
        (path.is_dir() and is_zarr(path))


def image_stem(path: str | Path) -> str:
    """An image file's name without its format suffix (`image_suffix`)."""
    name = Path(path).name
    return name[:len(name) - len(image_suffix(path))]


def read_image(path: str | Path) -> np.ndarray:
    """Read a TIFF or PNG file into a numpy array (axes as in the file); raises
    ``ValueError`` for other files."""
    return read_image_and_meta(path)[0]


def read_image_and_meta(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """Read an image file and what it says about its axes and pixel sizes (`ImageMeta`;
    TIFF: `napari_unet.io.tiff`; NIfTI: `napari_unet.io.nifti`, axes reversed to ZYX;
    PNG: nothing). Raises ``ValueError`` for a missing, unreadable, empty or unsupported
    file."""
    path = Path(path)
    if path.is_dir() and is_zarr(path):  # read whole: a zarr array or OME-Zarr level 0
        image, meta = open_zarr_image(path)
        return np.asarray(image), meta
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give an image file (.tif or .png).")
    if not path.is_file():
        raise ValueError(f"Image file {str(path)!r} does not exist.")
    suffix = image_suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path.name!r}: only TIFF (.tif, .tiff), PNG (.png) and NIfTI (.nii, "
                         ".nii.gz) files are supported.")
    try:
        if suffix == ".png":
            import imageio.v3 as iio

            array, meta = np.asarray(iio.imread(path)), ImageMeta()
        elif suffix in NIFTI_SUFFIXES:
            array, meta = read_nifti(path)
        else:
            array, meta = read_tiff(path)
    except ValueError as err:
        if "pip install" in str(err):  # a missing optional package, not a bad file
            raise
        raise ValueError(f"Could not read {str(path)!r}: it is corrupt or not an image ({err}).") from err
    except Exception as err:  # noqa: BLE001 - any reader failure means an unreadable file
        raise ValueError(f"Could not read {str(path)!r}: it is corrupt or not an image ({err}).") from err
    if array.size == 0:
        raise ValueError(f"Could not read any pixels from {str(path)!r}: the file is empty or corrupt.")
    if meta.axes or meta.scale:
        logger.info("read %s: shape %s, axes %s, pixel size %s %s", path.name, array.shape,
                    meta.axes or "not given", dict(meta.scale) or "not given", meta.unit() or "")
    return array, meta


def write_image(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as TIFF (any dtype) or PNG (uint8/uint16 2D or RGB), atomically;
    returns the path."""
    write_images({path: array})
    return Path(path)


def write_images(outputs: dict[str | Path, np.ndarray],
                 metas: Mapping[str | Path, ImageMeta] | None = None) -> None:
    """Write several images that belong together (labels, probabilities ...): each under a
    partial name first, then all renamed into place (`napari_unet.io.outputs.atomic_paths`),
    so they are replaced together or not at all. A failed write (a full disk) is a
    ``ValueError`` naming the file. ``metas`` gives an output's axes and pixel sizes
    (TIFF: an ImageJ hyperstack, or OME-TIFF for a ``.ome.tif`` name; see
    `napari_unet.io.tiff.write_tiff`); outputs without one are written plain."""
    metas = {Path(k): v for k, v in (metas or {}).items()}
    items = [(Path(path), array) for path, array in outputs.items()]
    for path, array in items:
        check_image_output(path, array.dtype, array.ndim)
    with atomic_paths([path for path, _ in items]) as partials:
        for (path, array), partial in zip(items, partials):
            try:
                _write(partial, path, array, metas.get(path))
            except OSError as err:
                raise ValueError(f"Cannot write {str(path)!r}: {err.strerror or err}. No output "
                                 "was replaced; free some space or choose another folder.") from err


def _write(partial: Path, path: Path, array: np.ndarray, meta: ImageMeta | None) -> None:
    """Write ``array`` to ``partial``, in the format ``path`` (its final name) asks for."""
    if image_suffix(path) == ".png":
        import imageio.v3 as iio

        iio.imwrite(partial, array, extension=".png")
    elif image_suffix(path) in NIFTI_SUFFIXES:
        write_nifti(partial, path, array, meta)
    else:
        write_tiff(partial, array, meta, ome=path.name.lower().endswith((".ome.tif", ".ome.tiff")))


def check_image_output(path: Path, dtype: np.dtype | None = None, ndim: int | None = None) -> None:
    """Raise ``ValueError`` unless an array of ``dtype``/``ndim`` (None: not known yet) can be
    written to ``path`` (TIFF: anything; PNG: 2D or RGB(A) uint8/uint16)."""
    suffix = image_suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path.name!r}: write .tif, .tiff or .png files (NIfTI: .nii, .nii.gz).")
    if suffix != ".png":
        return
    if dtype is not None and np.dtype(dtype) not in (np.uint8, np.uint16):
        raise ValueError(f"{path.name!r}: PNG holds only 8- or 16-bit whole numbers, not "
                         f"{np.dtype(dtype)}; write a .tif file instead.")
    if ndim is not None and ndim not in (2, 3):
        raise ValueError(f"{path.name!r}: PNG holds only 2D images; write a .tif file instead.")


def list_pairs(images_dir: str | Path, masks_dir: str | Path,
               what: tuple[str, str] = ("--images", "--masks")) -> list[tuple[Path, Path]]:
    """Match image and mask files by name (ignoring the suffix); raises if none or unmatched.
    ``what`` names the two folders in error messages."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d, what in zip((images_dir, masks_dir), what):
        if not d.is_dir():
            raise ValueError(f"{what} folder {str(d)!r} does not exist.")
    images = {image_stem(p): p for p in sorted(images_dir.iterdir()) if is_image(p)}
    masks = {image_stem(p): p for p in sorted(masks_dir.iterdir()) if is_image(p)}
    if not images:
        raise ValueError(f"No .tif/.tiff/.png/.nii/.nii.gz images or .zarr folders in "
                         f"{str(images_dir)!r}.")
    missing = sorted(set(images) - set(masks))
    if missing:
        raise ValueError(
            f"No mask for image(s) {missing[:5]} in {str(masks_dir)!r}; masks must have the "
            "same file name as their image."
        )
    return [(images[k], masks[k]) for k in sorted(images)]


class ImageFile:
    """A TIFF, PNG or NIfTI file or a zarr image whose pixels are read only when asked for (``numpy.asarray``,
    each time: nothing is kept); ``shape``, ``dtype`` and ``ndim`` come from its header.
    So training on a folder holds one raw image at a time, not the whole folder.
    ``axes`` are those the file names (`ImageMeta.axes`), None when it names none;
    ``spacing`` its pixel sizes along Z, Y, X (`ImageMeta.pixel_sizes`) or None."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.name
        try:
            if self.path.is_dir() and is_zarr(self.path):
                image, meta = open_zarr_image(self.path)
                shape, dtype = image.shape, image.dtype
            elif image_suffix(self.path) == ".png":
                import imageio.v3 as iio

                props = iio.improps(self.path)
                shape, dtype, meta = props.shape, props.dtype, ImageMeta()
            elif image_suffix(self.path) in NIFTI_SUFFIXES:
                shape, dtype, meta = nifti_header(self.path)
            else:
                import tifffile

                with tifffile.TiffFile(self.path) as tif:
                    shape, dtype, meta = tiff_header(tif)
        except ValueError as err:
            if "pip install" in str(err):  # a missing optional package, not a bad file
                raise
            raise ValueError(f"Could not read {str(self.path)!r}: {err}") from err
        except Exception as err:  # noqa: BLE001 - any reader failure means an unreadable file
            raise ValueError(f"Could not read {str(self.path)!r}: it is corrupt or not an image "
                             f"({err}).") from err
        self.shape, self.dtype, self.ndim = tuple(int(n) for n in shape), np.dtype(dtype), len(shape)
        self.axes = meta.axes
        self.spacing = meta.pixel_sizes(meta.axes or "ZYX")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = read_image(self.path)
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        return f"ImageFile({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"


def read_training_folder(images_dir: str | Path, masks_dir: str | Path,
                         what: tuple[str, str] = ("--images", "--masks")
                         ) -> tuple[list[ImageFile], list[ImageFile], list[str]]:
    """The image/mask pairs of two folders (`list_pairs`) as `ImageFile`s, read one at a
    time when training prepares them: ``(images, masks, names)``."""
    pairs = list_pairs(images_dir, masks_dir, what)
    return ([ImageFile(i) for i, _ in pairs], [ImageFile(m) for _, m in pairs],
            [i.name for i, _ in pairs])


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
