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
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Iterator, Mapping

import psutil

__all__ = ["check_outputs", "atomic_path", "atomic_paths", "same_or_inside", "partial_name",
           "remove_stale_partials"]


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


# A partial file is only removed once its writer is gone AND it is this old, so a writer
# on another host or in another PID namespace sharing the folder is safe.
STALE_PARTIAL_AGE_S = 120


def partial_name(path: Path) -> Path:
    """A hidden temporary name beside ``path``: ``.STEM.PID.8-hex-digits.SUFFIX``.

    It keeps the suffix (Keras insists on ``.keras``) and names the writing
    process, so a later write can tell left-overs of killed writers from the
    files of writers still at work.
    """
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}{path.suffix}")


def _partial_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(path.stem)}\.(\d{{1,10}})\.[0-9a-f]{{8}}{re.escape(path.suffix)}")


def remove_stale_partials(path: Path) -> None:
    """Delete partial files or folders of ``path`` left by writers that are gone (best effort).

    Only names made by `partial_name` for this destination, older than
    `STALE_PARTIAL_AGE_S`, whose process no longer exists, are removed.
    """
    pattern, now = _partial_pattern(path), time.time()
    try:
        with os.scandir(path.parent) as listing:
            entries = [e for e in listing if pattern.fullmatch(e.name)]
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if now - st.st_mtime <= STALE_PARTIAL_AGE_S or _process_alive(
                    int(pattern.fullmatch(entry.name)[1])):
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif stat.S_ISREG(st.st_mode):
                os.unlink(entry.path)
        except OSError:
            continue


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` may still exist (True when unsure)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        return psutil.pid_exists(pid)
    except (OverflowError, ValueError, OSError):
        return True


def _sync(path: Path) -> None:
    """Flush a written file, or a folder's entries, to disk (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (see `partial_name`) to write ``path``'s new content to.

    The block may write a file or a folder there. On leaving it normally the
    temporary replaces ``path`` (an existing folder is swapped out, then
    removed) and is flushed to disk; on any exception, KeyboardInterrupt
    included, the temporary is removed and ``path`` is untouched. Left-overs
    of killed writers are removed first (`remove_stale_partials`). The file
    gets the usual mode for new files (0o666 less the umask).
    """
    path = Path(path)
    remove_stale_partials(path)
    tmp = partial_name(path)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            old = partial_name(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _sync(tmp)
            os.replace(tmp, path)
        _sync(path.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_paths(paths: list[str | os.PathLike]) -> Iterator[list[Path]]:
    """`atomic_path` for several outputs that belong together (a prediction's labels and
    probabilities): yields one temporary path per path; only when the block ends normally
    are they all renamed over their destinations, one after the other. On any exception
    every temporary is removed and every destination is left as it was, so the outputs
    are replaced together or not at all."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]
