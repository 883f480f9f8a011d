"""Where output bytes land: a file replaced atomically at the end, or standard output.

A results file is often read by something else (a dashboard, node_exporter's textfile
collector, a cron job's diff). Readers must see either the previous complete file or the
new complete one, never a half-written one, and a run that fails (full disk, Ctrl-C
followed by a fatal error) must leave the previous file alone. So we write a temporary file
in the same directory (same filesystem, so `os.replace` is atomic), fsync it, rename it over
the target and fsync the directory so the rename itself survives a crash.

The temporary name is `.{basename}.tmp-{random}`: hidden, and it does not end with the
target's suffix, because collectors pick files up by suffix (node_exporter reads `*.prom`)
and must not read a half-written one.

Replacement is for regular files only. A path that is a character device (`/dev/null`), a
FIFO or this process's own standard output or error (`/dev/stdout`) is written through, as
a shell's `>` would: renaming a temporary file over `/dev/null` would replace the system's
null device with a regular file (as root), or fail for want of write permission on `/dev`
(as anyone else). A symbolic link to a regular file keeps being a link: its target is
replaced, in the target's directory. Only a link owned by root or by us is followed: one
planted by another user in a directory they can write is refused, so that `-o` run as
root cannot be turned into "overwrite any file" (`follow_trusted_links`).

A run killed outright (SIGKILL, the OOM killer, a power cut) cannot remove its temporary
file. Each writer holds an exclusive `flock` on its temporary file for as long as it lives
(the kernel drops it however the process ends), so the next writer for the same path can
tell a dead run's leftover from a live run's file and removes only the former.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import BinaryIO

from scanner.core.sinks import OutputClosed, OutputError, OutputTarget

STDOUT_PATH = "-"

# A new file gets the mode a normal `open(path, "w")` would: 0o666 minus the umask, applied
# by the kernel. mkstemp's 0o600 would make a shared results file unreadable to the
# collector that runs as another user.
_NEW_FILE_MODE = 0o666
_NAME_ATTEMPTS = 16


_TEMP_SUFFIX = re.compile(r"[0-9a-f]{8}")  # os.urandom(4).hex(), as AtomicWriter names them
# Kinds of file that cannot be written through and must not be replaced either.
_REFUSED_KINDS = {
    stat.S_IFSOCK: "is a socket, which cannot be opened as a file; give a file name",
    stat.S_IFBLK: "is a block device; give a file name (results go to files, FIFOs and "
    "character devices only)",
}


def open_target(path: str) -> OutputTarget:
    """Open `path` for results: `-` is standard output; a regular file (or a new path) is
    replaced atomically; a character device, a FIFO, or our own stdout/stderr under another
    name is written through. Raises `OutputError` for anything else."""
    if path == STDOUT_PATH:
        return StreamWriter()
    followed = follow_trusted_links(path)
    try:
        found = os.stat(followed)
    except FileNotFoundError:
        return AtomicWriter(path)  # a new file (a dangling link is refused there)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    descriptor = _standard_stream_of(found)
    if descriptor is not None:
        return PassThroughWriter.duplicate(path, descriptor)
    kind = stat.S_IFMT(found.st_mode)
    if kind == stat.S_IFREG:
        return AtomicWriter(path)
    if kind == stat.S_IFDIR:
        raise OutputError(path, "is a directory; give a file name")
    if kind in _REFUSED_KINDS:
        raise OutputError(path, _REFUSED_KINDS[kind])
    return PassThroughWriter(path, opened_as=followed, expected=found)


# Links followed at most, as the kernel's MAXSYMLINKS.
_LINK_HOPS = 40


def follow_trusted_links(path: str) -> str:
    """`path` with its final-component symbolic links followed, each only if it is trusted:
    owned by root or by us. Raises `OutputError` at the first link owned by anyone else.

    The kernel's `fs.protected_symlinks` reasons the same way, but only in sticky
    world-writable directories such as /tmp. In a group-writable directory without the
    sticky bit, anyone in the group can plant `out.jsonl -> /etc/shadow`, and a root cron
    job's `-o` would then replace /etc/shadow with results (or write them into /dev/port
    through a link to it). A link owned by root or by us was put there by someone who could
    have written the target anyway (`/dev/stdout -> /proc/self/fd/1` is root's).

    Each link is read between two `lstat`s of the same inode: a link's text never changes,
    so the text read is the trusted link's even if the name is swapped meanwhile. What is
    returned is the first path that is not a link, or the last trusted link when what it
    points at cannot be looked up by name (a dangling link, or /proc's magic links such as
    /proc/self/fd/1, which only the kernel can follow)."""
    current = path
    our_uid = os.geteuid()
    for _ in range(_LINK_HOPS):
        try:
            link = os.lstat(current)
        except OSError:
            return current  # nothing there: opening it says what is wrong
        if not stat.S_ISLNK(link.st_mode):
            return current
        if link.st_uid not in (0, our_uid):
            named = "is" if current == path else f"leads through {current}, which is"
            raise OutputError(
                path,
                f"{named} a symbolic link owned by uid {link.st_uid}; "
                f"refusing to follow it as uid {our_uid}",
            )
        try:
            target = os.readlink(current)
            unchanged = _same_file(os.lstat(current), link)
        except OSError as exc:
            raise _os_error(path, exc) from exc
        if not unchanged:
            raise OutputError(path, "the symbolic link changed while it was being opened")
        directory = os.path.realpath(os.path.dirname(os.path.abspath(current)))
        following = os.path.join(directory, target)
        if not os.path.lexists(following):
            return current
        current = following
    raise _os_error(path, OSError(errno.ELOOP, os.strerror(errno.ELOOP)))


def _same_file(one: os.stat_result, other: os.stat_result) -> bool:
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


def output_identity(path: str) -> tuple[object, ...] | None:
    """What makes two `-o` paths the same output (`./x`, `x`, `/abs/x`, a link to it):
    the file's device and inode where it exists, its resolved path where it does not yet.

    None for a character device: writing through to `/dev/null` twice is harmless, so it
    may be given more than once. Two outputs into one regular file would leave only the
    last one committed, and two into one FIFO would mix their formats for its reader."""
    if path == STDOUT_PATH:
        return (STDOUT_PATH,)
    try:
        found = os.stat(path)
    except OSError:
        return ("new", os.path.realpath(path))
    if stat.S_ISCHR(found.st_mode):
        return None
    return ("file", found.st_dev, found.st_ino)


def _standard_stream_of(found: os.stat_result) -> int | None:
    """1 or 2 when `found` is this process's stdout or stderr (`/dev/stdout`, `/dev/fd/2`,
    `/proc/self/fd/1`, or the file the shell redirected it to): written through that
    descriptor, because a socket cannot be reopened by name and a file the shell opened
    for appending must not be replaced."""
    for descriptor in (1, 2):
        try:
            stream = os.fstat(descriptor)
        except OSError:  # closed (`>&-`)
            continue
        if (stream.st_dev, stream.st_ino) == (found.st_dev, found.st_ino):
            return descriptor
    return None


class _DescriptorWriter:
    """What the two writers on a descriptor of their own share: the descriptor, open until
    `commit` or `discard`, and unbuffered writes (nothing to flush)."""

    path: str
    _fd: int | None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def flush(self) -> None:
        """Nothing to do: writes go straight to the kernel, unbuffered."""
        self._require_open()

    def _require_open(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"{self.path}: writer already committed or discarded")
        return self._fd

    def _write_all(self, data: bytes | bytearray) -> None:
        """Write all of `data` (os.write may write less than asked, so loop); an OSError
        is the caller's to translate."""
        fd = self._require_open()
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]


class AtomicWriter(_DescriptorWriter):
    """Write a file that appears at `path` complete, on `commit()`, or not at all.

    Opening already creates the temporary file, so a missing directory or a permission
    problem is reported before any scanning starts. Any OS error raises `OutputError` and
    removes the temporary file; the previous file at `path` is never touched until commit.
    A symbolic link at `path` stays: the file it points to is the one replaced. Opening
    also removes the temporary files that dead runs left for the same file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.isdir(path):
            raise OutputError(path, "is a directory; give a file name")
        self._final_path = _replaced_file(path)
        directory, basename = os.path.split(self._final_path)
        self._directory = directory
        remove_stale_temporaries(directory, basename)
        self._fd: int | None = None
        try:
            self._fd, self.temp_path = _create_locked_temporary(directory, basename)
        except OSError as exc:
            raise self._error(exc) from exc

    def write(self, data: bytes | bytearray) -> None:
        """Write all of `data` (os.write may write less than asked, so loop)."""
        try:
            self._write_all(data)
        except OSError as exc:
            self.discard()
            raise self._error(exc) from exc

    def commit(self) -> None:
        """fsync, rename over the target, fsync the directory. Then the writer is closed."""
        fd = self._require_open()
        try:
            os.fsync(fd)  # some filesystems report ENOSPC/EIO only here
            # Renamed while still open, so still locked: a writer starting now must not
            # take the temporary file for a dead run's and remove it under us.
            os.replace(self.temp_path, self._final_path)
        except OSError as exc:
            self.discard()
            raise self._error(exc) from exc
        self._fd = None
        try:
            os.close(fd)
        except OSError as exc:  # the data was fsynced: a late close error is still one
            raise self._error(exc) from exc
        self._fsync_directory()

    def discard(self) -> None:
        """Remove the temporary file; the target is untouched. Safe to call repeatedly."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Unlinked while still locked, so no cleanup elsewhere races us for the name.
        with suppress(FileNotFoundError):
            os.unlink(self.temp_path)
        # The file is being thrown away: a late write error from close changes nothing.
        with suppress(OSError):
            os.close(fd)

    def _fsync_directory(self) -> None:
        # The rename has happened and readers see the new file; this only makes the rename
        # survive a power cut. Some filesystems refuse fsync on a directory (EINVAL), and
        # reporting "cannot write" for a file that was written would be wrong, so failures
        # here are not errors.
        try:
            dir_fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    def _error(self, exc: OSError) -> OutputError:
        return _os_error(self.path, exc)


def _os_error(path: str, exc: OSError) -> OutputError:
    """The one translation of an OS error on an output into what the user reads."""
    reason = exc.strerror or os.strerror(exc.errno or errno.EIO)
    return OutputError(path, reason)


def _replaced_file(path: str) -> str:
    """The file a commit replaces: `path` itself, or, when `path` is a symbolic link to a
    regular file, the file it resolves to (so the link survives and points at the new
    results, as `open(path, "w")` would leave it).

    The kernel refuses to follow some links (`fs.protected_symlinks`: a link owned by
    someone else in a sticky world-writable directory such as /tmp); resolving the path
    by hand would bypass that, so the link is first followed by the kernel, and the file
    it reached must be the one resolved. Only trusted links are followed (see
    `follow_trusted_links`). A dangling link is refused: creating the file it names is
    rarely what was meant."""
    absolute = os.path.abspath(path)
    if not os.path.islink(absolute):
        return absolute
    last = follow_trusted_links(absolute)
    resolved = os.path.join(os.path.realpath(os.path.dirname(last)), os.path.basename(last))
    if os.path.islink(resolved):
        raise OutputError(
            path,
            f"is a symbolic link to {os.path.realpath(absolute)}, which does not exist; "
            "give a file name",
        )
    try:
        followed = os.open(absolute, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OutputError(
            path, f"is a symbolic link to {resolved}, which does not exist; give a file name"
        ) from None
    except OSError as exc:
        raise _os_error(path, exc) from exc
    try:
        reached = os.fstat(followed)
    finally:
        os.close(followed)
    try:
        named = os.stat(resolved)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    if (named.st_dev, named.st_ino) != (reached.st_dev, reached.st_ino):
        raise OutputError(path, "the symbolic link changed while it was being opened")
    return resolved


def _create_locked_temporary(directory: str, basename: str) -> tuple[int, str]:
    """A new temporary file `.{basename}.tmp-{random}` in `directory`, already locked.

    Locked before it has a name where the filesystem allows (O_TMPFILE, then a link via
    /proc): a writer cleaning up can never find it unlocked. Elsewhere (no O_TMPFILE, no
    /proc) it is locked just after creation, and a cleanup running in that instant could
    remove it; the commit would then fail with a clear error, never a wrong file."""
    try:
        return _link_locked_temporary(directory, basename)
    except _NoUnnamedFiles:
        pass
    for _ in range(_NAME_ATTEMPTS):
        candidate = os.path.join(directory, _temporary_name(basename))
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(candidate, flags, _NEW_FILE_MODE)
        except FileExistsError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)  # new and ours: nobody else can hold it
        return fd, candidate
    raise _names_exhausted()


def _names_exhausted() -> OSError:
    return OSError(errno.EEXIST, "could not pick an unused temporary file name")


class _NoUnnamedFiles(Exception):
    """This filesystem (or a missing /proc) does not allow a file locked before it is named."""


_UNSUPPORTED_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})


def _link_locked_temporary(directory: str, basename: str) -> tuple[int, str]:
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, _NEW_FILE_MODE)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED_ERRNOS:
            raise _NoUnnamedFiles from exc
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for _ in range(_NAME_ATTEMPTS):
                name = _temporary_name(basename)
                try:
                    # A directory descriptor makes CPython call linkat(AT_SYMLINK_FOLLOW),
                    # which links the unnamed file the /proc entry stands for.
                    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=directory_fd)
                except FileExistsError:
                    continue
                except FileNotFoundError as exc:  # no /proc
                    raise _NoUnnamedFiles from exc
                return fd, os.path.join(directory, name)
        finally:
            os.close(directory_fd)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    raise _names_exhausted()


def _temporary_name(basename: str) -> str:
    return f".{basename}.tmp-{os.urandom(4).hex()}"


def remove_stale_temporaries(directory: str, basename: str) -> tuple[str, ...]:
    """Remove the temporary files that dead writers left for `basename`; their paths.

    Only what is provably a dead reachscan writer's goes: named as ours, a regular file
    (links and devices are never opened), owned by this user, and unlocked. A live
    writer, in this process or another, holds its lock until after its rename, so its
    file is never taken. Best effort: a directory that cannot be listed is left alone."""
    prefix = f".{basename}.tmp-"
    try:
        names = os.listdir(directory)
    except OSError:
        return ()
    removed = []
    for name in names:
        if name.startswith(prefix) and _TEMP_SUFFIX.fullmatch(name[len(prefix) :]):
            path = os.path.join(directory, name)
            if _remove_if_dead(path):
                removed.append(path)
    return tuple(removed)


def _remove_if_dead(path: str) -> bool:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or opened.st_uid != os.geteuid():
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            return False
        # Its writer may have renamed it into place and exited between our open and our
        # lock: remove the name only while it still names this very file.
        named = os.lstat(path)
        if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class PassThroughWriter(_DescriptorWriter):
    """Write straight into a character device, a FIFO, or our own stdout/stderr by name.

    Nothing is replaced and nothing can be taken back: what was written stays written, as
    with standard output. The path is opened without O_CREAT or O_TRUNC, so if it changed
    into something else meanwhile nothing is created or emptied.

    A FIFO is opened with O_NONBLOCK, so one without a reader fails at once with a clear
    error instead of hanging the run before it starts (an unattended run with nobody to
    start the reader would wait forever); a reader already waiting in its own open()
    counts, so `cat fifo & reachscan ... -o fifo` works. The descriptor is then made
    blocking, so a slow reader slows the run rather than losing results. Closing it (at
    commit, at discard, or by the kernel when the process dies) gives the reader its EOF.
    """

    def __init__(
        self,
        path: str,
        descriptor: int | None = None,
        *,
        opened_as: str | None = None,
        expected: os.stat_result | None = None,
    ) -> None:
        """`opened_as`: what `path` leads to through trusted links (`follow_trusted_links`),
        opened with O_NOFOLLOW so that a link planted there since cannot redirect the
        write; `expected`: what it was found to be, which the opened file must still be."""
        self.path = path
        if descriptor is not None:
            self._fd: int | None = descriptor
            return
        if opened_as is None:
            opened_as = follow_trusted_links(path)
        flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        if not os.path.islink(opened_as):  # a trusted magic link (/proc/self/fd/N) stays
            flags |= os.O_NOFOLLOW
        try:
            fd = os.open(opened_as, flags)
        except OSError as exc:
            if exc.errno == errno.ENXIO and _is_fifo(opened_as):
                raise OutputError(
                    path, "is a FIFO with no reader; start its reader first"
                ) from None
            if exc.errno == errno.ELOOP:
                raise OutputError(
                    path, "became a symbolic link while it was being opened"
                ) from None
            raise _os_error(path, exc) from exc
        try:
            opened = os.fstat(fd)
            if stat.S_ISREG(opened.st_mode):
                raise OutputError(path, "became a regular file while it was being opened")
            if expected is not None and not _same_file(opened, expected):
                raise OutputError(path, "changed while it was being opened")
            os.set_blocking(fd, True)
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise _os_error(path, exc) from exc
            raise
        self._fd = fd

    @classmethod
    def duplicate(cls, path: str, descriptor: int) -> PassThroughWriter:
        """A writer for `path` that is already open here as `descriptor` (1 or 2)."""
        try:
            return cls(path, os.dup(descriptor))
        except OSError as exc:
            raise _os_error(path, exc) from exc

    def write(self, data: bytes | bytearray) -> None:
        try:
            self._write_all(data)
        except BrokenPipeError as exc:
            self.discard()
            raise OutputError(self.path, "its reader went away (Broken pipe)") from exc
        except OSError as exc:
            self.discard()
            raise _os_error(self.path, exc) from exc

    def commit(self) -> None:
        """Close: no fsync (a FIFO or a device has nothing to sync), no rename."""
        fd = self._require_open()
        self._fd = None
        try:
            os.close(fd)
        except OSError as exc:
            raise _os_error(self.path, exc) from exc

    def discard(self) -> None:
        """Close; what was written stays. Safe to call repeatedly."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with suppress(OSError):
            os.close(fd)


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


class StreamWriter:
    """Standard output (or any binary stream): no atomicity, written through, flushed.

    A closed pipe raises `OutputClosed` so the caller can end quietly; other errors (stdout
    redirected to a full disk) raise `OutputError`.
    """

    def __init__(self, stream: BinaryIO | None = None, name: str = "standard output") -> None:
        # Look sys.stdout up now, not at import: tests and the CLI may have replaced it.
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._name = name

    def write(self, data: bytes | bytearray) -> None:
        with _stream_errors(self._name):
            self._stream.write(data)

    def flush(self) -> None:
        with _stream_errors(self._name):
            self._stream.flush()

    def commit(self) -> None:
        self.flush()

    def discard(self) -> None:
        """Nothing can be taken back from a stream; what was written stays written."""


@contextmanager
def _stream_errors(name: str) -> Iterator[None]:
    """Translate a stream's OS errors into the output exceptions, in one place."""
    try:
        yield
    except BrokenPipeError as exc:
        raise OutputClosed(f"{name} was closed by its reader") from exc
    except OSError as exc:
        raise OutputError(name, exc.strerror or str(exc)) from exc
