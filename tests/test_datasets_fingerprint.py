"""Issue 12 and issue 14 item 9: a photo folder's fingerprint hashes every file's bytes,
so a same-size replacement is seen; digests are kept in <cache>.index.json so a re-run
reads only files whose size or mtime changed (--verify reads all); a cache that no longer
matches its folder is refused naming the files added, removed or changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from conftest import PHOTOS_FIXTURE, error_line
from conftest import invoke_extract as invoke
from extract.datasets import load_dataset
from extract.index import index_path

CATS = sorted((PHOTOS_FIXTURE / "train" / "cats").glob("cat.*.jpg"))
DOGS = sorted((PHOTOS_FIXTURE / "train" / "dogs").glob("dog.*.jpg"))


def pets(root: Path) -> Path:
    for folder, photos in (("cats", CATS[:4]), ("dogs", DOGS[:4])):
        (root / folder).mkdir(parents=True)
        for p in photos:
            shutil.copy(p, root / folder / p.name)
    return root


def flip_a_byte(path: Path, keep_mtime: bool = False) -> None:
    """The same size, other bytes (as a re-encoded or replaced photo of equal length)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_same_size_replacement_changes_the_fingerprint(tmp_path):
    root = pets(tmp_path / "pets")
    before = load_dataset(root, 32).fingerprint
    assert load_dataset(root, 32).fingerprint == before
    flip_a_byte(root / "cats" / CATS[1].name)
    assert load_dataset(root, 32).fingerprint != before


def test_index_is_trusted_until_size_or_mtime_change_and_verify_rereads(tmp_path):
    root = pets(tmp_path / "pets")
    index = tmp_path / "features" / "p.h5.index.json"

    def fingerprint(**kw) -> str:
        data = load_dataset(root, 32, index=index, **kw)
        data.save_index()  # what a run does once it has something to keep
        return data.fingerprint

    unsaved = load_dataset(root, 32, index=index)
    assert not index.exists()  # loading alone writes nothing: a refused run leaves no index behind
    first = fingerprint()
    assert first == unsaved.fingerprint
    files = json.loads(index.read_text())["files"]
    assert len(files) == 8 and all(len(v[2]) == 64 for v in files.values())
    flip_a_byte(root / "dogs" / DOGS[0].name, keep_mtime=True)
    assert fingerprint() == first      # size and mtime unchanged: trusted
    verified = fingerprint(verify=True)
    assert verified != first and verified == load_dataset(root, 32).fingerprint
    flip_a_byte(root / "cats" / CATS[0].name)                            # a new mtime: re-hashed
    assert fingerprint() == load_dataset(root, 32).fingerprint != verified


def test_rerun_is_up_to_date_and_a_changed_folder_is_refused_naming_files(tmp_path):
    root = pets(tmp_path / "pets")
    out = tmp_path / "features" / "p.h5"
    args = ("--data-dir", root, "--weights", "none", "--out", out, "--test-fraction", "0.25")
    assert invoke(*args).exit_code == 0
    assert index_path(out) == tmp_path / "features" / "p.h5.index.json" and index_path(out).is_file()
    r = invoke(*args)
    assert r.exit_code == 0 and "already up to date" in r.stdout, r.output
    r = invoke(*args, "--verify")
    assert r.exit_code == 0 and "already up to date" in r.stdout, r.output

    built = out.read_bytes()
    flip_a_byte(root / "cats" / CATS[2].name)
    shutil.copy(CATS[5], root / "cats" / "new.jpg")
    (root / "dogs" / DOGS[3].name).unlink()
    r = invoke(*args)
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1
    msg = error_line(r)
    assert "holds a cache made with other settings (data_fingerprint" in msg
    assert "the data folder changed since: " in msg
    assert "added: cats/new.jpg" in msg and f"removed: dogs/{DOGS[3].name}" in msg and f"changed: cats/{CATS[2].name}" in msg
    assert "use --force" in msg and out.read_bytes() == built
