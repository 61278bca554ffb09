"""The checks a model file passes before and after Keras reads it (see
`napari_unet.model.files` for the list); every failure is a `ModelFileError`.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from .config import UNetConfig
from .costs import count_parameters
from .decoding import DECODING_FIELDS, Decoding
from .normalization import PercentileNormalization
from .summary import FORMAT_VERSION, ModelSummary

METADATA_ENTRY = "napari_unet.json"
SUFFIX = ".keras"
WEIGHTS_ENTRY = "model.weights.h5"
KERAS_CONFIG_ENTRY = "config.json"
ENTRIES = frozenset({"metadata.json", KERAS_CONFIG_ENTRY, WEIGHTS_ENTRY, METADATA_ENTRY})
MAX_ENTRIES = 64  # entries a model file may declare before its directory is even read
_EOCD_SIZE = 22  # bytes of a zip's end-of-central-directory record (without its comment)
# A depth-6 U-Net's Keras config is ~100 KiB and a training history a few KiB per
# 100 epochs, so 16 MiB is generous for every JSON entry.
MAX_JSON_BYTES = 16 << 20
# HDF5 headers of model.weights.h5 take ~0.3 MiB for a depth-6 BatchNorm U-Net.
WEIGHTS_SLACK_BYTES = 4 << 20
# float32 weights barely compress (deflate: ~1.1x); more means a decompression bomb.
MAX_WEIGHTS_EXPANSION = 4
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
               RuntimeError, ValueError)


class ModelFileError(ValueError):
    """A model file is missing, corrupt, foreign or incompatible."""


# ----------------------------------------------------------------------------- file and archive
def open_regular_file(path: Path, suffix: str = SUFFIX, what: str = "model file") -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file ending in ``suffix``; else
    `ModelFileError` (``what`` names the kind of file in the message).

    Folders, FIFOs and devices (also behind a symbolic link) are refused before they are
    opened; the type is checked again on the open descriptor (``O_NONBLOCK``: a path
    swapped for a FIFO in between cannot make the open hang).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise ModelFileError(f"{str(path)!r} is a folder, not a {what}; choose a "
                                 f"'{suffix}' file.")
        if path.suffix.lower() != suffix:
            raise ModelFileError(
                f"{str(path)!r} is not a '{suffix}' {what}; napari-unet only loads "
                f"'{SUFFIX}' files saved by save_model or the Build widget, and the "
                "bioimage.io packages (.zip) it exported."
            )
        if stat.S_ISREG(mode):
            fd = os.open(path, flags)
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return os.fdopen(fd, "rb")
            os.close(fd)
    except FileNotFoundError:
        raise ModelFileError(f"{what.capitalize()} {str(path)!r} does not exist.") from None
    except OSError as err:
        raise ModelFileError(f"Cannot read {what} {str(path)!r}: {err.strerror or err}.") from err
    raise ModelFileError(f"{str(path)!r} is not a regular file (a device, FIFO or socket); "
                         f"choose a {what}.")


def check_entry_count(fh: BinaryIO, path: Path, most: int, what: str = "model file") -> None:
    """Refuse a zip archive that declares more than ``most`` entries, from its end-of-central-
    directory record, before ``zipfile`` reads (and allocates for) its whole directory;
    ``fh`` is left at the start. An archive with no such record is left to ``zipfile``."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - _EOCD_SIZE - 0xFFFF))
    tail = fh.read()
    fh.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        return
    entries = int.from_bytes(tail[at + 10:at + 12], "little")  # 0xFFFF: zip64, even more
    if entries > most:
        many = "65,535 or more" if entries == 0xFFFF else f"{entries:,}"
        raise ModelFileError(f"{str(path)!r} holds {many} entries, far more than any "
                             f"napari-unet {what} (at most {most}); refusing to read it.")


def read_model_file(path: Path) -> tuple[dict[str, Any], ModelSummary, Any]:
    """Check the model file ``path`` (steps 1-4 of the module docstring).

    Returns the raw metadata dict, the model's checked `ModelSummary` and the parsed
    Keras ``config.json``.
    """
    with open_regular_file(path) as fh:
        check_entry_count(fh, path, MAX_ENTRIES)
        try:
            archive = zipfile.ZipFile(fh)
        except _ZIP_ERRORS as err:
            raise ModelFileError(
                f"{str(path)!r} is not a valid .keras file (not a zip archive): it is corrupt "
                "or truncated. Save the model again."
            ) from err
        with archive:
            try:
                _check_entries(archive, path)
                meta = _read_json(archive, METADATA_ENTRY, path)
                summary = _validate_metadata(meta, path)
                _check_weights_entry(archive.getinfo(WEIGHTS_ENTRY), summary.config, path)
                return meta, summary, _read_json(archive, KERAS_CONFIG_ENTRY, path)
            except ModelFileError:
                raise
            except _ZIP_ERRORS as err:
                raise ModelFileError(
                    f"{str(path)!r} is corrupt ({err}). Save the model again."
                ) from err


def _check_entries(archive: zipfile.ZipFile, path: Path) -> None:
    """Require exactly our four entries, readable and of bounded declared size."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if METADATA_ENTRY not in names:
        raise ModelFileError(
            f"{str(path)!r} is a Keras file but was not saved by napari-unet "
            "(no napari_unet.json inside); build and train a model here, or save it "
            "with napari_unet.save_model."
        )
    if len(names) != len(ENTRIES) or set(names) != ENTRIES:
        unexpected = sorted(set(names) - ENTRIES)[:5]
        raise ModelFileError(
            f"{str(path)!r} is not a napari-unet model file: it holds {len(names)} entries "
            f"(unexpected: {unexpected}, missing: {sorted(ENTRIES - set(names))}); expected "
            f"exactly {sorted(ENTRIES)}."
        )
    for info in infos:
        encrypted = info.flag_bits & 0x1
        if encrypted or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(
                f"{str(path)!r}: entry {info.filename} is encrypted or uses an unsupported "
                "compression; save the model again."
            )
        if info.filename != WEIGHTS_ENTRY and info.file_size > MAX_JSON_BYTES:
            raise _too_big(path, info.filename)


def _too_big(path: Path, name: str) -> ModelFileError:
    return ModelFileError(
        f"{str(path)!r}: entry {name} is larger than {MAX_JSON_BYTES >> 20} MiB, far more than "
        "any napari-unet model file needs; refusing to read it."
    )


def _read_json(archive: zipfile.ZipFile, name: str, path: Path) -> Any:
    """Parse the UTF-8 JSON entry ``name``, reading at most `MAX_JSON_BYTES`."""
    with archive.open(name) as fh:
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise _too_big(path, name)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, nesting, huge integers
        raise ModelFileError(f"{str(path)!r}: entry {name} is not valid JSON ({err}).") from err


def _check_weights_entry(info: zipfile.ZipInfo, config: UNetConfig, path: Path) -> None:
    """Bound the weights' declared size by the config's parameter count and the stored bytes."""
    params = count_parameters(config)
    low, high = 4 * params, 8 * params + WEIGHTS_SLACK_BYTES
    if not low <= info.file_size <= high:
        raise ModelFileError(
            f"{str(path)!r}: the stored network does not match its config: {WEIGHTS_ENTRY} "
            f"declares {info.file_size:,} bytes but {params:,} parameters need {low:,} to {high:,}."
        )
    if info.file_size > MAX_WEIGHTS_EXPANSION * info.compress_size + WEIGHTS_SLACK_BYTES:
        raise ModelFileError(
            f"{str(path)!r}: {WEIGHTS_ENTRY} declares {info.file_size:,} bytes but stores only "
            f"{info.compress_size:,}; refusing a possible decompression bomb."
        )


# ----------------------------------------------------------------------------- metadata
def _validate_metadata(meta: Any, path: Path) -> ModelSummary:
    """Check every field of the parsed ``napari_unet.json``; returns its `ModelSummary`."""
    if not isinstance(meta, dict) or meta.get("format") != "napari-unet":
        raise ModelFileError(
            f"{str(path)!r} has unrecognised metadata; it was not written by napari-unet."
        )
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{str(path)!r} has no valid format_version (got {_short(version)}); "
                             "the file is corrupt.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} was written by a newer napari-unet (model file format "
            f"{_short(version)}; this version reads format {FORMAT_VERSION}). Upgrade "
            "napari-unet to load it."
        )
    try:
        linked = _expect(meta.get("linked_decoding", {}), dict, "linked_decoding")
        return ModelSummary(
            config=UNetConfig.from_dict(_expect(meta.get("config"), dict, "config")),
            normalization=_normalization(meta.get("normalization", {})),
            target=_target(meta.get("target", "")),
            # a value missing from an older file is the default; each is checked by Decoding
            decoding=Decoding.from_dict({**Decoding().to_dict(), **{
                k: meta[k] for k in DECODING_FIELDS if k in meta}}),
            linked_decoding=Decoding.from_dict(linked, "linked_decoding") if linked else None,
            class_names=tuple(_strings(meta.get("class_names", []), "class_names")),
            history=_history(meta.get("history", {})),
            info=_expect(meta.get("info", {}), dict, "info"))
    except (TypeError, ValueError, OverflowError) as err:
        raise ModelFileError(
            f"{str(path)!r} has invalid metadata in {METADATA_ENTRY}: {err}"
        ) from err


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expect(value: Any, kind: type, name: str) -> Any:
    """``value`` if it is a ``kind`` (dict, list or str), else ``ValueError``."""
    if not isinstance(value, kind):
        wanted = {dict: "a JSON object", list: "a JSON array", str: "a string"}[kind]
        raise ValueError(f"{name} must be {wanted}; got {_short(value)}.")
    return value


def _number(value: Any, name: str, finite: bool = True) -> float:
    """``value`` as a float if it is a JSON number (and finite if asked), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number; got {_short(value)}.")
    number = float(value)
    if finite and not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {value}.")
    return number


def _target(value: Any) -> str:
    if value not in ("", "foreground", "classes", "boundary"):
        raise ValueError(f"target must be 'foreground', 'classes' or 'boundary'; got "
                         f"{_short(value)}.")
    return value


def _normalization(value: Any) -> PercentileNormalization:
    data = dict(_expect(value, dict, "normalization"))
    unknown = sorted(set(data) - {"kind", "low", "high"})
    if unknown:
        raise ValueError(f"unknown normalization keys {unknown}.")
    for key in ("low", "high"):
        if key in data:
            data[key] = _number(data[key], f"normalization {key}")
    return PercentileNormalization.from_dict(data)


def _strings(value: Any, name: str) -> list[str]:
    return [_expect(item, str, f"each of {name}") for item in _expect(value, list, name)]


def _history(value: Any) -> dict[str, list[float]]:
    """Per-epoch metrics: lists of numbers (NaN and infinity allowed: training can diverge)."""
    history = {}
    for key, values in _expect(value, dict, "history").items():
        name = f"history {key!r}"
        history[key] = [_number(v, name, finite=False) for v in _expect(values, list, name)]
    return history


# ----------------------------------------------------------------------------- network
def as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def describe_network(model: Any) -> Any:
    """A Keras model's config (layers, their configs and wiring) and its weights' shapes."""
    weights = [[w.path, list(w.shape), str(w.dtype)] for w in model.weights]
    return as_json({"config": model.get_config(), "weights": weights})


def compare_networks(path: Path, stored: Any, expected: Any, tolerate_missing: bool) -> None:
    """Raise `ModelFileError` at the first difference between two network descriptions."""
    where = _first_difference(stored, expected, "", tolerate_missing)
    if where is not None:
        raise ModelFileError(
            f"{str(path)!r}: the stored network does not match its config at {where}. The file "
            "was modified or written by an incompatible version; save the model again."
        )


def _first_difference(stored: Any, expected: Any, at: str, tolerate_missing: bool) -> str | None:
    """Where ``stored`` first differs from ``expected`` (JSON trees), or None if they agree.

    ``shared_object_id`` keys (object identities) are ignored; list items that
    are named (layers) are labelled by name. With ``tolerate_missing``, keys
    absent from ``stored`` are accepted (Keras then uses its default).
    """
    if isinstance(stored, dict) and isinstance(expected, dict):
        for key in list(expected) + [k for k in stored if k not in expected]:
            if key == "shared_object_id" or (key not in stored and tolerate_missing):
                continue
            if key not in stored or key not in expected:
                return f"{at}.{key} ({'missing' if key not in stored else 'not expected'})"
            found = _first_difference(stored[key], expected[key], f"{at}.{key}", tolerate_missing)
            if found:
                return found
        return None
    if isinstance(stored, list) and isinstance(expected, list) and len(stored) == len(expected):
        for i, (item, want) in enumerate(zip(stored, expected)):
            name = want.get("name") if isinstance(want, dict) else None
            label = repr(name) if isinstance(name, str) else str(i)
            found = _first_difference(item, want, f"{at}[{label}]", tolerate_missing)
            if found:
                return found
        return None
    if type(stored) is type(expected) and stored == expected:
        return None
    return f"{at or 'the top level'}: stored {_short(stored)}, expected {_short(expected)}"
