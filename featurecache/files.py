"""Files every stage writes the same way: atomically, checked for room, and hashed.

- `Staged` writes a set of files aside (`.<stem>.<pid>.tmp<suffix>` in the
  target folder) and renames them into place together only when all are
  written; any failure or interrupt removes the temporary files and leaves
  the earlier files untouched. `atomic_path` is the one-file case and
  `write_text` the one-string case.
- `check_writable` makes a folder and proves a file can be created in it.
- `sha256` digests a file (weights, saved models, photos).
- `versions` names the library versions a result was made with.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import platform
import sys
from pathlib import Path
from typing import Iterator

from featurecache.errors import UserError, reason

# errors that mean "no room": a full disk, a file-size limit, a quota
NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


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


class Staged:
    """Files written aside and renamed into place together: `with Staged() as s: write(s.aside(path))`."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    def aside(self, final: str | os.PathLike) -> Path:
        final = Path(final)
        tmp = temp_name(final)
        self.pending.append((tmp, final))
        return tmp

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
            return
        try:
            for tmp, _ in self.pending:
                _fsync(tmp)
            for tmp, final in self.pending:
                os.replace(tmp, final)
        except OSError as e:
            self.discard()
            raise room_error(e, self.pending[0][1].parent) from None

    def discard(self) -> None:
        for tmp, _ in self.pending:
            with contextlib.suppress(OSError):
                if tmp.is_dir():
                    import shutil

                    shutil.rmtree(tmp)
                else:
                    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `final`, renamed onto it when the block succeeds, removed when it fails."""
    with Staged() as staged:
        yield staged.aside(final)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def room_error(e: OSError, where: str | os.PathLike, need: int | None = None) -> Exception:
    """A full disk, file-size limit or quota as one line naming the place and the space needed;
    any other OSError as a one-line write error."""
    if getattr(e, "errno", None) in NO_ROOM:
        needs = f" (about {need / 2**20:,.0f} MB more are needed)" if need else ""
        return UserError(f"no room to write in {where} ({os.strerror(e.errno)}){needs}; free some space "
                         "or raise the file-size limit, then run the same command again: finished parts are kept")
    return UserError(f"could not write in {where} ({reason(e, 80)}); check the folder and its permissions")


def check_writable(folder: str | os.PathLike, option: str = "--out") -> Path:
    """Create `folder` if needed and prove a file can be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {folder} ({reason(e, 60)}); choose a writable {option}") from None
    return folder


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
