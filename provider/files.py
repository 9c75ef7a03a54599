"""Reading files named by the configuration: regular files only, bounded in size.

A FIFO, device or socket named as a key file or as the configuration would block ``open`` or ``read`` forever (a
FIFO's ``open`` waits for a writer): the file is opened non-blocking and refused unless it is a regular file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotRegularFileError(OSError):
    """The path exists but is not a regular file."""

    def __init__(self, path: Path, mode: int) -> None:
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a directory"
            if stat.S_ISDIR(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", str(path))


def read_regular(path: Path, max_bytes: int) -> bytes:
    """Up to ``max_bytes + 1`` bytes of a regular file (the caller compares with its limit). Raises ``OSError``
    (:class:`NotRegularFileError` for FIFOs, devices, sockets, directories)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, mode)
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def signature(paths: tuple[str, ...]) -> tuple[tuple[str, int, int, int, int], ...]:
    """What identifies the current contents of ``paths`` without reading them: (path, device, inode, size,
    mtime in ns) — a replaced or rewritten file changes it. A missing file counts as (path, 0, 0, -1, 0)."""
    out: list[tuple[str, int, int, int, int]] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append((p, 0, 0, -1, 0))
            continue
        out.append((p, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)
