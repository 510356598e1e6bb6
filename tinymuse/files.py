"""Writing files so that nothing saved is ever half-written.

A program can die at any instant (a crash, Ctrl-C, a full disk, a power cut). If it dies while
overwriting ``model.safetensors`` in place, the old weights are gone and the new ones are
incomplete. The remedy is to write somewhere else and swap:

1. write the new content to a temporary file next to the target (same directory, so the
   rename below stays on one file system);
2. flush it to the disk (``fsync``), so the bytes exist before the name points at them;
3. rename it over the target in one step (``os.replace``, atomic on POSIX and Windows);
4. flush the directory, so the rename itself survives a power cut.

Whoever reads the target sees the old file or the new one, never a mixture. Every file
tinymuse writes for later use goes through :func:`atomic_path` (checkpoints, pipeline folders,
run records, the pictures and scores the command writes).

A file the user did not ask to replace must not be replaced either: ``overwrite=False`` makes
step 3 a hard link instead of a rename (``os.link`` refuses an existing name, so no other
program can slip a file in between a check and the write), and raises
:class:`FileExistsError` if the name is taken.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "write_text", "write_bytes", "copy_file"]


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # other systems make the rename durable by themselves
        return
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _publish(temporary: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    taken = FileExistsError(f"{target} exists already; choose another name or allow "
                            f"replacing it")
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise taken from None
    except OSError:  # a file system without hard links: check, then rename
        if target.exists():
            raise taken from None
        os.replace(temporary, target)
        return
    os.unlink(temporary)


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = True) -> Iterator[Path]:
    """``with atomic_path(target) as temporary:`` write the file at ``temporary``; when the
    block ends without an error it is flushed and renamed over ``target``, and on an error it
    is deleted and ``target`` is left as it was. The directory is created if needed. With
    ``overwrite=False`` an existing ``target`` is kept and :class:`FileExistsError` raised."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        # Some writers create files readable by their owner only; give the file the
        # permissions any other file of this process gets.
        os.chmod(temporary, 0o666 & ~_umask())
        _publish(temporary, target, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(target.parent)


def write_text(path, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path. ``overwrite=False``
    refuses an existing file (:class:`FileExistsError`)."""
    with atomic_path(path, overwrite) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path. ``overwrite=False`` refuses
    an existing file (:class:`FileExistsError`)."""
    with atomic_path(path, overwrite) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def copy_file(source, target) -> Path:
    """Copy ``source`` to ``target`` atomically: ``target`` is the old file or a whole copy."""
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)
    return Path(target)
