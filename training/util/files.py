"""Atomic writes and content digests: the one place that writes a file so that a reader never
sees half of it.

Every writer goes through :func:`atomic_path`: the data goes to a temp file in the target's
folder (``.<name>.tmp-<pid>``), is flushed and fsynced, then renamed over the target. A failure
(disk full, interrupt, an exception in the caller) leaves the previous file untouched and no
temp file behind; a process killed with ``kill -9`` leaves its temp file, which
:func:`remove_stale_temps` cleans up on the next run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_MARK = ".tmp-"


class WriteError(OSError):
    """A file could not be written (read-only folder, full disk, ...): the message names the path
    and the reason in one line."""


def as_write_error(path: str | Path, err: OSError) -> WriteError:
    """``err`` (raised while writing ``path``) as a one-line :class:`WriteError` naming
    ``path`` and the reason; a ``WriteError`` is returned unchanged."""
    return err if isinstance(err, WriteError) else _explain(Path(path), err)


def _explain(path: Path, err: OSError) -> WriteError:
    if err.errno == errno.ENOSPC:
        reason = "no space left on the device"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "permission denied (read-only folder?)"
    else:
        reason = err.strerror or str(err)
    return WriteError(err.errno or 0, f"cannot write {path}: {reason}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on normal exit it is fsynced and renamed to ``path``.

    Use for writers that take a path (``torch.save``, ``fig.savefig``, ``df.to_csv``). OS errors
    become :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as err:
        raise _explain(path, err) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` for writing (``mode`` ``"w"`` or ``"wb"``), atomically (see :func:`atomic_path`)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be one of ['w', 'wb'], got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (one trailing newline) atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | Path, table: Any, **kwargs: Any) -> Path:
    """Write a pandas DataFrame as CSV (no index unless asked) atomically, header included even
    when the table has no rows."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **kwargs)
    return Path(path)


def torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer = _RecordingWriter(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            # torch swallows the failed write's OSError (full disk: ENOSPC) and reports
            # "unexpected pos ..." instead: raise the OSError, which names the reason.
            if writer.error is not None:
                raise writer.error from None
            raise
    return Path(path)


class _RecordingWriter:
    """A binary file for ``torch.save`` that keeps the ``OSError`` of a failed write."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temp files left by killed writers (``.<name>.tmp-<pid>`` whose process is gone)
    directly in ``folder``; returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f".*{TEMP_MARK}*"):
        pid = tmp.name.rsplit(TEMP_MARK, 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def digest(*parts: Any, length: int = 16) -> str:
    """Hex sha256 of ``parts`` serialised as key-sorted JSON (``str`` for other objects),
    cut to ``length`` characters: the one content key of caches and steps."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Full hex sha256 of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            sha.update(block)
    return sha.hexdigest()
