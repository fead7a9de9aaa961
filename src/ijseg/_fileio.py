"""Safe file output: writability checked before the work, temporary file then rename.

An interrupted or failed write never leaves a half-written file under the final name. The
temporary files carry the writer's process id (``.NAME.ijsegPID.XXXX.tmp.EXT``), so that a
later run can remove those of a process that was killed (:func:`remove_stale_temporaries`)
without touching those of a run still going.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import IjsegError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_csv", "remove_stale_temporaries", "remove_own_temporaries",
           "check_output_dir",
           "check_output_file"]

_TMP_NAME = re.compile(r"^\..*\.ijseg(\d+)\.[^.]+\.tmp(\..*)?$")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once at import: os.umask can only be read by setting it, which is not thread-safe
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    Parameters
    ----------
    path
        Final file name. Its folder is created if needed.
    suffix
        Suffix of the temporary file (some writers insist on an extension, Keras wants
        ``.keras`` or ``.weights.h5``). Defaults to the suffixes of ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    tmp_path = None
    try:  # created inside the try, so that an interrupt right after it still removes it
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.ijseg{os.getpid()}.", suffix=".tmp" + suffix,
                                   dir=path.parent)
        tmp_path = Path(tmp)
        os.close(fd)
        yield tmp_path
        # mkstemp creates files readable by the owner only; give the result normal permissions
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        if tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_csv(path: str | os.PathLike, rows: list[dict], *, float_format: str = ".6g",
                     columns: list[str] | None = None) -> None:
    """Write dict rows as CSV atomically; columns are the union of keys in first-seen order.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> atomic_write_csv(p, [{"a": 1, "b": 0.5}, {"a": 2, "c": "x"}])
    >>> print(p.read_text(), end="")
    a,b,c
    1,0.5,
    2,,x
    """
    import csv
    import io

    keys: list[str] = list(columns or [])
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (format(v, float_format) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_own_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete this process's temporary files in ``folder``: after an interrupt, when nothing of
    this process writes there any more (a signal can land between a temporary file's creation and
    the code that would remove it)."""
    removed = []
    for p in Path(folder).glob(f".*.ijseg{os.getpid()}.*"):
        if _TMP_NAME.match(p.name):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def remove_stale_temporaries(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` left in ``folder`` by a process that no
    longer runs (killed before it could clean up); return them.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".a.ijseg999999999.x1.tmp.tif").write_bytes(b"")   # no such process
    >>> [p.name for p in remove_stale_temporaries(d)]
    ['.a.ijseg999999999.x1.tmp.tif']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in (folder.rglob(".*") if recursive else folder.glob(".*")):
        m = _TMP_NAME.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, what: str, target: Path) -> None:
    """Create and delete a file in ``folder`` (``os.access`` is wrong for root, /proc, read-only mounts)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".ijseg-write-test.", dir=folder)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise IjsegError(f"{target}: cannot write {what}: {folder} is not writable ({reason})") from err
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | os.PathLike, what: str = "the output folder") -> Path:
    """Check, before any work, that ``path`` can be a folder of outputs: an existing folder or a
    path that can be created, in a writable place. Nothing is created.

    Raises
    ------
    IjsegError
        Naming ``path`` and the problem (a file of that name exists, no permission, read-only...).
    """
    path = Path(path)
    existing = _nearest_existing(path)
    if existing.resolve() == path.absolute().resolve() and not path.is_dir():
        raise IjsegError(f"{path}: a file of that name exists; {what} must be a folder")
    if not existing.is_dir():
        raise IjsegError(f"{path}: cannot create {what}: {existing} is a file")
    _probe_writable(existing, what, path)
    return path


def check_output_file(path: str | os.PathLike, what: str = "the output file") -> Path:
    """Check, before any work, that the file ``path`` can be written (its folder exists or can be
    created, and is writable; ``path`` is not a folder). Nothing is created.

    Raises
    ------
    IjsegError
        Naming ``path`` and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise IjsegError(f"{path}: is a folder; {what} must be a file name")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise IjsegError(f"{path}: cannot create {what}: {existing} is a file")
    _probe_writable(existing, what, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise IjsegError(f"{path}: cannot write {what}: {os.strerror(errno.EACCES)}")
    return path
