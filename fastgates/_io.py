"""Atomic file writes, shared by the LM checkpoints and the ONNX export.

Design: the bytes go to a temporary file in the target's folder (same file system), which
``os.replace`` then renames over the target (atomic on POSIX and Windows), so a reader or a
crash sees the old file or the new one, never a part.  On any error, KeyboardInterrupt
included, the temporary file is removed and the error propagates.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, *, prefix, suffix, durable=False, before_replace=None):
    """Yield a binary file that replaces ``path`` when the block ends without error.

    ``prefix`` / ``suffix`` name the temporary file.  ``durable``: flush and fsync it
    before the rename and fsync the folder after it (best effort), so the new file
    survives a power cut.  ``before_replace``: called once the file is written (and
    fsync'ed) and closed, just before the rename (a hook for tests).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        try:  # make the rename itself durable (POSIX; best effort)
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
