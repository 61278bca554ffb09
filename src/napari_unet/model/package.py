"""bioimage.io packages read back: the napari-unet model file a package exported by
`napari_unet.bioimageio.export` carries as an attachment, taken out under the same
rules as a model file (a regular file, entries counted and sizes bounded before
anything is read, the attachment streamed out with a cap); `napari_unet.model.files`
then loads it, naming the package in any error.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from .file_format import ModelFileError, check_entry_count, open_regular_file

__all__ = ["PACKAGE_ATTACHMENT", "extract_attachment"]

PACKAGE_ATTACHMENT = "napari_unet_model.keras"
PACKAGE_SUFFIX = ".zip"
MAX_PACKAGE_ENTRIES = 1000  # an exported package holds about ten
# A model file is a zip of float32 weights that barely compress, so its bytes in the package
# are about its size; more than this expansion means a decompression bomb.
MAX_EXPANSION = 4
SLACK_BYTES = 4 << 20
MAX_ATTACHMENT_BYTES = 4 << 30
_CHUNK = 1 << 20


def extract_attachment(path: Path, folder: Path) -> Path:
    """Copy the attached model file of the package ``path`` into ``folder``; returns the
    copy's path. `ModelFileError` naming the package for anything else: not a regular
    file, not a zip, too many entries, no attachment (another network's package), an
    attachment that is encrypted, declares an absurd size or expands more than model
    files do, or that gives more bytes than it declared."""
    with open_regular_file(path, PACKAGE_SUFFIX, "bioimage.io package") as fh:
        check_entry_count(fh, path, MAX_PACKAGE_ENTRIES, "bioimage.io package")
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            raise ModelFileError(f"{str(path)!r} is not a bioimage.io package (.zip): "
                                 f"{err}") from None
        with archive:
            info = _attachment(archive, path)
            target = folder / PACKAGE_ATTACHMENT
            try:
                with archive.open(info) as source, open(target, "wb") as out:
                    _copy_at_most(source, out, info.file_size, path)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise ModelFileError(f"{str(path)!r}: its attached model file is corrupt "
                                     f"({err}); export the package again.") from None
    return target


def _attachment(archive: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    """The attachment's entry, checked before a byte of it is read."""
    try:
        info = archive.getinfo(PACKAGE_ATTACHMENT)
    except KeyError:
        raise ModelFileError(f"{path.name!r} was not exported by napari-unet (no "
                             f"{PACKAGE_ATTACHMENT}); napari-unet runs only its own "
                             "U-Nets.") from None
    if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED,
                                                          zipfile.ZIP_DEFLATED):
        raise ModelFileError(f"{str(path)!r}: its attached model file is encrypted or uses "
                             "an unsupported compression; export the package again.")
    if (info.file_size > MAX_ATTACHMENT_BYTES
            or info.file_size > MAX_EXPANSION * info.compress_size + SLACK_BYTES):
        raise ModelFileError(
            f"{str(path)!r}: its attached model file declares {info.file_size:,} bytes from "
            f"{info.compress_size:,} stored; no napari-unet model file is like that, refusing "
            "a possible decompression bomb.")
    return info


def _copy_at_most(source: BinaryIO, out: BinaryIO, size: int, path: Path) -> None:
    """Copy ``source`` to ``out`` in chunks, refusing a stream longer than ``size``."""
    copied = 0
    while chunk := source.read(min(_CHUNK, size + 1 - copied)):
        copied += len(chunk)
        if copied > size:
            raise ModelFileError(f"{str(path)!r}: its attached model file holds more bytes "
                                 "than it declares; refusing it.")
        out.write(chunk)
