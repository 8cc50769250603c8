"""Files every stage writes the same way: atomically, checked for room, and hashed.

- `Staged` writes a set of files aside (`.<stem>.<pid>.tmp<suffix>` in the
  target folder) and renames them into place together only when all are
  written; any failure or interrupt removes the temporary files and leaves
  the earlier files untouched. `atomic_path` is the one-file case and
  `write_text` the one-string case.
- `check_writable` makes a folder and proves a file can be created in it.
- `remove_stale_temps` removes the temporary files of runs that were killed
  (their pid is gone), so a folder does not fill with `.x.1234.tmp.png`.
- `locked` holds an exclusive `filelock.FileLock` around a read-merge-write of
  a file that several runs share (reports/comparison.csv).
- `interruptible` makes a command treat SIGTERM like Ctrl-C: temporary files
  are removed on the way out and the command exits 130 with one line.
- `sha256` digests a file (weights, saved models, photos).
- `versions` names the library versions a result was made with.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import platform
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator

from featurecache.errors import SettingError, UserError, reason

# errors that mean "no room": a full disk, a file-size limit, a quota
NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# `temp_name`'s pattern, and check_writable's probe: the pid is what tells a live run's file from a dead one's
TEMP_PATTERN = re.compile(r"^\.(?:.+\.(?P<pid>\d+)\.tmp(?:\.[^.]*)?|write-test\.(?P<probe>\d+))$")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temp_name(final: Path) -> Path:
    """Where `final` is written before it is renamed into place (same folder, same suffix: Keras wants .keras)."""
    return final.with_name(f".{final.stem}.{os.getpid()}.tmp{final.suffix}")


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, so a set of renames is never cut in half
    (a signal that arrives meanwhile is delivered right after)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Staged:
    """Files written aside and renamed into place together: `with Staged() as s: write(s.aside(path))`.

    The renames happen when the block ends without an exception, or earlier at `commit()` (to
    commit while a lock is still held); nothing is renamed once an exception has passed through.
    A folder `aside` had to make for a file is removed again when nothing is renamed into it.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []
        self.made: list[Path] = []   # folders made for files written aside, removed on discard if still empty

    def aside(self, final: str | os.PathLike) -> Path:
        final = Path(final)
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True)
            self.made.append(final.parent)
        tmp = temp_name(final)
        self.pending.append((tmp, final))
        return tmp

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
            return
        self.commit()

    def commit(self) -> None:
        """Rename every file written aside so far into place (all of them, or none on an error)."""
        try:
            for tmp, _ in self.pending:
                _fsync(tmp)
            with signals_held():
                for tmp, final in self.pending:
                    os.replace(tmp, final)
        except OSError as e:
            where = self.pending[0][1].parent
            self.discard()
            raise room_error(e, where) from None
        self.pending, self.made = [], []

    def discard(self) -> None:
        with signals_held():
            for tmp, _ in self.pending:
                with contextlib.suppress(OSError):
                    if tmp.is_dir():
                        import shutil

                        shutil.rmtree(tmp)
                    else:
                        tmp.unlink(missing_ok=True)
            for folder in reversed(self.made):
                with contextlib.suppress(OSError):
                    folder.rmdir()   # only when empty: files renamed into it before a failure stay
            self.pending, self.made = [], []


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `final`, renamed onto it when the block succeeds, removed when it fails."""
    with Staged() as staged:
        yield staged.aside(final)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def os_error(e: BaseException) -> OSError | None:
    """The OSError behind an exception: itself, or the one h5py reports only inside a RuntimeError's
    text ("... errno = 27, error message = 'File too large'"); None when there is none."""
    if isinstance(e, OSError) and e.errno is not None:
        return e
    m = re.search(r"errno = (\d+)", str(e)) if isinstance(e, (OSError, RuntimeError)) else None
    if m:
        return OSError(int(m[1]), os.strerror(int(m[1])))
    return e if isinstance(e, OSError) else None


def room_error(e: OSError, where: str | os.PathLike, need: int | None = None) -> Exception:
    """A full disk, file-size limit or quota as one line naming the place and the space needed;
    any other OSError as a one-line write error."""
    if getattr(e, "errno", None) in NO_ROOM:
        needs = f" (about {need / 2**20:,.0f} MB more are needed)" if need else ""
        return UserError(f"no room to write in {where} ({os.strerror(e.errno)}){needs}; free some space "
                         "or raise the file-size limit, then run the same command again: finished parts are kept")
    return UserError(f"could not write in {where} ({reason(e, 80)}); check the folder and its permissions")


def check_writable(folder: str | os.PathLike, setting: str = "out") -> Path:
    """Create `folder` if needed and prove a file can be written there (`setting` names it in errors)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SettingError(f"cannot write to {setting}={str(folder)!r} ({reason(e, 60)}); pass a folder you can write to") from None
    return folder


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    return True


def remove_stale_temps(folder: str | os.PathLike, final: str | os.PathLike | None = None) -> list[Path]:
    """Remove `.<stem>.<pid>.tmp<suffix>` files (and write probes) whose process is gone: what a
    killed run left behind. Files of runs still alive are left alone. With `final`, only the
    temporaries of that one file (`temp_name(final)` of any pid) are looked at. Returns what was removed."""
    removed = []
    own = None if final is None else re.compile(
        re.escape(f".{Path(final).stem}.") + r"\d+" + re.escape(f".tmp{Path(final).suffix}"))
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = TEMP_PATTERN.match(entry.name)
            if not m or (own and not own.fullmatch(entry.name)) or pid_alive(int(m["pid"] or m["probe"])):
                continue
            path = Path(entry.path)
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    import shutil

                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
    return removed


@contextlib.contextmanager
def locked(lock_path: str | os.PathLike, what: str, timeout: float = 600) -> Iterator[None]:
    """Hold an exclusive lock (`filelock.FileLock` on `lock_path`) for a read-merge-write of a
    shared file, so runs started together each add their part instead of overwriting each other's."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise UserError(f"{what} is locked by another run ({lock_path}) for over {timeout:.0f} s; "
                        "wait for it to finish, or delete the lock file if no run is left") from None
    except OSError as e:
        raise room_error(e, Path(lock_path).parent) from None
    try:
        yield
    finally:
        lock.release()


class Interrupted(UserError):
    """Ctrl-C or SIGTERM: one line and exit status 130, as shells report a run stopped by SIGINT."""

    exit_code = 130


_signalled: list[str] = []  # names of the signals that interrupted this process


def _raise_interrupt(signum, frame):
    _signalled.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interruptible(what: str):
    """Decorator for a command: SIGTERM is handled like Ctrl-C, and either stops the command with one
    line and exit 130. The KeyboardInterrupt passes through every `Staged` block on the way out, so
    files written aside are removed and files already in place stay as they were."""

    def wrap(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            main = threading.current_thread() is threading.main_thread()
            previous = ({sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
                        if main else {})
            try:
                return command(*args, **kwargs)
            except BaseException as e:
                # a library unwinding from the interrupt may raise its own error on the way out
                # (TensorFlow: "Exiting device scope without proper scope nesting"): the signal is the cause
                if not (isinstance(e, KeyboardInterrupt) or _signalled):
                    raise
                name = _signalled[0] if _signalled else "SIGINT"
                raise Interrupted(f"interrupted ({name}): {what} stopped; files it had not finished are removed "
                                  "and earlier results are unchanged") from None
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        return run

    return wrap


def versions() -> dict:
    """Versions of Python and of the libraries that shape a result (TensorFlow and Keras when loaded)."""
    import h5py
    import numpy as np

    from featurecache import __version__

    out = {"featurecache": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "h5py": h5py.__version__}
    for name, module in (("scikit-learn", "sklearn"), ("tensorflow", "tensorflow"), ("keras", "keras")):
        if module in sys.modules:
            out[name] = getattr(sys.modules[module], "__version__", "?")
    return out
