"""The ``napari-unet`` command: demo, train, predict, evaluate, info, export.

Run ``napari-unet COMMAND --help`` for the options of each command. `main` maps every
failure to one line and an exit status; `napari_unet.cli.parser` holds the options,
`napari_unet.cli.commands` and `napari_unet.cli.predict` what each command does.
"""

from __future__ import annotations

import logging
import os
import sys

from .parser import build_parser

__all__ = ["main", "build_parser"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if args.debug else "3")
    if args.debug:  # and the library's own messages (the "napari_unet" logger)
        _show_library_log()
    if args.version:
        from ..version import __version__

        print(__version__)
        return 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except BaseException as err:  # noqa: BLE001 - every failure ends in one line and a status
        if isinstance(err, SystemExit):
            raise
        if isinstance(err, BrokenPipeError):  # e.g. `napari-unet info m.keras | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        status, message = _failure(err)
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"napari-unet {args.command}: {message}", file=sys.stderr)
        return status


def _show_library_log() -> None:
    """Print the ``napari_unet`` logger's messages, all levels, on standard error."""
    log = logging.getLogger("napari_unet")
    log.setLevel(logging.DEBUG)
    if not any(isinstance(h, _StandardError) for h in log.handlers):
        handler = _StandardError()
        handler.setFormatter(logging.Formatter("napari-unet: %(levelname)s: %(message)s"))
        log.addHandler(handler)


class _StandardError(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a message comes."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _failure(err: BaseException) -> tuple[int, str]:
    """Exit status and one-line message for an exception that ended a command."""
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted; nothing was written"
    if isinstance(err, MemoryError):
        return 2, f"out of memory: {err or 'use a smaller --tile-size, or a smaller model'}"
    if isinstance(err, (ValueError, OSError)):
        return 2, f"error: {err}"
    return 1, f"internal error ({type(err).__name__}: {err}); run with --debug for details"
