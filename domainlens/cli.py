"""The ``domainlens`` command: one sub-command per module of :mod:`domainlens.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (``args -> int`` exit code) as its default. Commands import their heavy dependencies
inside ``func`` so that ``domainlens --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "reproduce", "data", "mixtures", "train", "eval", "cka", "circuits", "patch",
    "embeddings", "features", "compare", "ao",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="domainlens",
        description="Train small CLIPs on controlled domain mixtures and open them up.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"domainlens.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        # Bad input: one clear line, no traceback.
        return _fail(args.command, error, 2)
    except (OSError, FloatingPointError) as error:
        # A file that cannot be written (read-only folder, full disk: WriteError names the
        # path and the reason), a run that diverged: one line, no traceback, nothing lost.
        return _fail(args.command, error, 1)


def _fail(command: str, error: BaseException, code: int) -> int:
    """Print ``error`` as one line on stderr; return ``code``."""
    print(f"domainlens {command}: error: {_one_line(error)}", file=sys.stderr)
    return code


def _one_line(error: BaseException) -> str:
    """An error's message; an ``OSError`` as ``<path>: <reason>`` (not ``[Errno 2] ...``)."""
    from training.util.files import WriteError

    if isinstance(error, WriteError):
        return error.strerror or str(error)  # str() would prefix "[Errno 28]"
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        extra = f" ({error.filename2})" if error.filename2 else ""
        return f"{where}{error.strerror}{extra}"
    return str(error) or type(error).__name__


if __name__ == "__main__":
    raise SystemExit(main())
