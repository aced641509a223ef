"""``python -m pvqae_lib train | evaluate | benchmark | fewshot | predict | demo``.

Bad input ends with one line on stderr and exit code 2, never a traceback; nothing a user made
is overwritten without ``--force``. This module runs a command and turns its errors into that one line; the grammar is
:mod:`pvqae_lib.commands.parser`, each command a module of :mod:`pvqae_lib.commands`, and ``train``'s
settings are the config dataclasses' fields (:mod:`pvqae_lib.flags`).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from .commands.parser import command_of, parse
from .data import DataError
from .data.files import EmptyMaskWarning
from .engine.train import CHECKPOINT
from .flags import UsageError
from .runs.folder import RunError


def one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def describe_os_error(e: OSError, output=None) -> str:
    """'cannot use PATH: No space left on device' (both paths for a rename); without a path in the
    error, the message and the command's output (``--out`` / ``--json``) it was writing."""
    if e.filename is None:
        return one_line(e) + (f" (while writing {output})" if output else "")
    where = str(e.filename) + (f" -> {e.filename2}" if e.filename2 else "")
    return f"cannot use {where}: {e.strerror or one_line(e)}"


def one_line_warnings(show_other):
    """A ``warnings.showwarning`` that prints the library's own warnings (about the user's data, e.g.
    empty masks) as one line on stderr, 'warning: ...', at once; any other goes to ``show_other``."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, EmptyMaskWarning):
            print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)
        else:
            show_other(message, category, filename, lineno, file, line)
    return show


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parse(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", EmptyMaskWarning)
            warnings.showwarning = one_line_warnings(warnings.showwarning)
            return command_of(args.command)(args)
    except (DataError, UsageError, RunError, ValueError) as e:     # CheckpointError is a ValueError too
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:           # exists, is a folder, no space left, read-only ...: one line naming the path
        output = getattr(args, "out", None) or getattr(args, "json", None)
        print(f"error: {describe_os_error(e, output)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = ""
        if args.command == "train":
            saved = (Path(args.out) / CHECKPOINT).is_file()
            resume = ("; the last finished epoch is saved, continue with --resume" if saved
                      else " before the first epoch finished: nothing was kept to --resume")
        print(f"interrupted{resume}", file=sys.stderr)
        return 130


def entry_point() -> None:
    """The ``pvqae`` command (pyproject.toml): ``main`` with its exit code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
