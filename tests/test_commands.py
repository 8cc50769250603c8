"""The one `featurecache` command: every stage a subcommand, loaded lazily; library errors become one line
naming the flag; the wheel installs only featurecache, extract and classify."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT, classify_run, error_line

EVERY = ["extract", "merge", "classify", "compare", "learning-curve", "active", "fewshot", "audit", "robustness", "robust-model",
         "report", "predict", "export"]
HEAVY = ("tensorflow", "keras", "sklearn", "h5py", "matplotlib")


def featurecache(*args):
    from featurecache.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="featurecache")


def listed(help_text: str) -> list[str]:
    """The subcommand names under "Commands:" of a --help page, in order."""
    rows = help_text.split("Commands:", 1)[1].splitlines()
    return [row.split()[0] for row in rows if row.startswith("  ") and not row.startswith("   ")]


def test_help_lists_every_subcommand_and_imports_no_stage():
    code = ("import sys\nfrom featurecache.cli import cli\ncli(['--help'], prog_name='featurecache', standalone_mode=False)\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert listed(r.stdout) == EVERY
    assert r.stdout.strip().splitlines()[-1] == "[]"   # no TensorFlow, nor any other stage's library
    r = subprocess.run([sys.executable, "-m", "featurecache", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and listed(r.stdout) == EVERY, r.stderr


@pytest.mark.parametrize("name", EVERY)
def test_every_subcommand_loads_with_its_own_help(name):
    r = featurecache(name, "--help")
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"Usage: featurecache {name} ")


def test_an_unknown_subcommand_is_one_usage_error():
    r = featurecache("clasify")
    assert r.exit_code == 2 and "No such command 'clasify'" in r.output


def test_a_setting_error_is_python_in_the_library_and_a_flag_on_the_command_line(tiny_cache, tmp_path):
    from featurecache.errors import SettingError
    from classify.training.data import stratified_subset

    with pytest.raises(SettingError, match=r"^train_size=1000 is more than the 100 training rows") as e:
        stratified_subset(np.arange(100) % 10, 1000, 0)
    assert e.value.setting == "train_size" and isinstance(e.value, ValueError)
    r = featurecache("classify", "--features", tiny_cache, "--train-size", "1000", "--out-dir", tmp_path)
    line = error_line(r, 1)
    assert line.startswith("Error: --train-size 1000 is more than the 100 training rows") and "train_size" not in line


def test_flags_replace_settings_by_the_commands_own_names():
    from featurecache.command import flagged

    flags = {"folder": "--out", "train_size": "--train-size"}
    assert flagged("folder='/a b/x' holds files; force=True replaces only exports, e.g. folder='/a b/x-2'",
                   flags) == "--out /a b/x holds files; --force replaces only exports, e.g. --out /a b/x-2"
    assert flagged("pass a larger `train_size` (see features/a=b.h5)", flags) == \
        "pass a larger --train-size (see features/a=b.h5)"
    assert flagged("re-extract with augment=SPEC views=K, or leave out `tta`", flags) == \
        "re-extract with --augment SPEC --views K, or leave out `tta`"   # tta: no flag of this command
    text = "set MLFLOW_ALLOW_FILE_STORE=true, or use http://host/x?run=3 (C=1 is ok)"   # not settings
    assert flagged(text, flags) == text
    assert flagged(text, {"C": "--C"}).endswith("(--C 1 is ok)")


def test_export_is_a_subcommand_naming_its_own_flags(tiny_cache, tmp_path):
    """`export --out` and `predict --export` write the same export; a refusal names the flag that was used."""
    run = classify_run(tiny_cache, tmp_path / "reports")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine\n")
    line = error_line(featurecache("export", "--run", run, "--out", kept), 1)
    assert f"--out {kept} holds files that are not an export's" in line and "--force replaces only" in line
    line = error_line(featurecache("predict", "--run", run, "--export", kept), 1)
    assert f"--export {kept} holds files that are not an export's" in line
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("module", ["extract", "classify", "featurecache"])
def test_python_dash_m_still_runs(module):
    r = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("Usage: "), r.stderr


@pytest.mark.slow
def test_the_wheel_installs_only_the_three_packages_and_one_command_lists_every_stage(tmp_path):
    """Built without the network from a copy of the tree; installed into a fresh virtual environment that
    borrows this interpreter's third-party packages (never this checkout's own)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("featurecache", "extract", "classify", "bench", "tests"):   # bench and tests must stay out
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "fixtures"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    r = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path),
                        str(src)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("featurecache-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"featurecache", "extract", "classify"}

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    r = subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    installed = {p.name for p in purelib.iterdir() if not p.name.endswith((".dist-info", ".pth"))}
    assert installed == {"featurecache", "extract", "classify"}, installed
    # click, TensorFlow and the rest come from this interpreter's site-packages, after the venv's own
    (purelib / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([str(venv / "bin" / "featurecache"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and listed(r.stdout) == EVERY, r.stdout + r.stderr
    where = ("import json, featurecache, extract, classify.commands.predict\n"
             "print(json.dumps([m.__file__ for m in (featurecache, extract, classify.commands.predict)]))")
    r = subprocess.run([str(python), "-c", where], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert all(Path(f).is_relative_to(purelib) for f in json.loads(r.stdout))
    r = subprocess.run([str(venv / "bin" / "featurecache"), "export", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--out" in r.stdout, r.stderr
