"""Output files that never cost the user data: checked before the work, written atomically.

`check_outputs` refuses, before anything is computed, an output that is one of
the inputs (also through links, or a folder containing it), two outputs with
one path, a missing or read-only folder, a folder where a file goes, and an
existing file unless overwriting was asked for. `atomic_path` gives a
temporary name beside the destination and renames it over the destination
only when writing succeeded, so an interrupted write leaves the old file (or
nothing) behind, never half a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Mapping

__all__ = ["check_outputs", "atomic_path", "same_or_inside"]


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def same_or_inside(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are one file or folder (links resolved), or one holds the other."""
    ra, rb = _real(a), _real(b)
    if ra == rb or ra in rb.parents or rb in ra.parents:
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_outputs(outputs: Mapping[str, str | os.PathLike | None],
                  inputs: Mapping[str, str | os.PathLike | None], *, overwrite: bool = False,
                  folders: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` if writing ``outputs`` could destroy data or fail for want of a folder.

    ``outputs`` and ``inputs`` map a name the user knows (``"--out"``,
    ``"input"``) to a path; None entries are skipped. ``folders`` names the
    outputs that are written as folders (zarr). Nothing is created or changed.
    """
    outs = {k: Path(v) for k, v in outputs.items() if v is not None}
    ins = {k: Path(v) for k, v in inputs.items() if v is not None}
    for name, out in outs.items():
        for in_name, src in ins.items():
            if same_or_inside(out, src):
                raise ValueError(f"{name} {str(out)!r} would overwrite the {in_name} "
                                 f"{str(src)!r}; choose another output path.")
        for other, path in outs.items():
            if other < name and same_or_inside(out, path):
                raise ValueError(f"{other} and {name} are the same path {str(out)!r}; give "
                                 "each output its own file.")
        _check_destination(name, out, overwrite, as_folder=name in folders)


def _check_destination(name: str, out: Path, overwrite: bool, as_folder: bool) -> None:
    parent = out.parent
    if not parent.is_dir():
        raise ValueError(f"{name}: the folder {str(parent)!r} does not exist; create it first.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: the folder {str(parent)!r} is not writable; choose another.")
    if out.is_dir() and not as_folder:
        raise ValueError(f"{name} {str(out)!r} is a folder; give a file name.")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise ValueError(f"{name} {str(out)!r} already exists; pass --overwrite to replace "
                         "it, or choose another name.")
    if out.exists() and as_folder and not out.is_dir():
        raise ValueError(f"{name} {str(out)!r} is a file, not a folder; choose another name.")


def partial_name(path: Path) -> Path:
    """A hidden temporary name beside ``path`` that keeps its suffix and names this process."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to (a file or a folder).

    On leaving the block normally the temporary replaces ``path`` (an existing
    folder is swapped out, then removed); on any exception, KeyboardInterrupt
    included, the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = partial_name(path)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            old = partial_name(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
