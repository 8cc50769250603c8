"""Keep the README true: every command it names must exist."""

import re
import subprocess
from pathlib import Path

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def make_targets() -> set[str]:
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"make (\S+)", out))


def test_every_make_target_in_readme_exists_and_is_documented():
    named = set(re.findall(r"(?:^|`)make ([a-z][a-z-]*)", README, re.MULTILINE))
    assert {"features", "test", "classify", "compare"} <= named
    missing = named - make_targets()
    assert not missing, f"README names make targets that `make help` does not list: {missing}"


def test_make_help_is_the_default_goal():
    out = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "make features" in out and "make test" in out


def test_every_python_module_in_readme_exists():
    modules = set(re.findall(r"python -m ([a-z_.]+)", README))
    assert modules, "README shows no python -m commands"
    for mod in modules:
        path = ROOT / Path(*mod.split("."))
        assert (path / "__main__.py").exists() or path.with_suffix(".py").exists(), mod


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_features_passes_variables_through():
    out = subprocess.run(
        ["make", "-n", "features", "DATA_DIR=d", "WEIGHTS=none", "BACKBONE=vgg19", "POOLING=flatten",
         "IMAGE_SIZE=64", "LIMIT=7", "OUT=o.h5"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    for flag in ['--data-dir "d"', '--weights "none"', '--backbone "vgg19"', '--pooling "flatten"',
                 '--image-size "64"', '--limit "7"', '--out "o.h5"']:
        assert flag in out


def test_make_predict_without_run_names_the_missing_option(tmp_path):
    """`make predict` without RUN= leaves --run out, so the command itself says what is missing."""
    import sys

    bin_dir = str(Path(sys.executable).parent)
    r = subprocess.run(["make", "-s", "-o", ".venv/.installed-stamp", f"BIN={bin_dir}", "predict",
                        f"IMAGES={tmp_path / 'a photo.jpg'}"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0
    assert "Missing option '--run'" in r.stderr and "no run record at ." not in r.stderr


def test_the_readme_is_a_first_page_with_every_command_and_its_docs():
    lines = int(subprocess.run(["wc", "-l", str(ROOT / "README.md")], capture_output=True, text=True,
                               check=True).stdout.split()[0])
    assert lines <= 220, f"README.md has {lines} lines; move detail to docs/"
    named = set(re.findall(r"(?:^|`)make ([a-z][a-z-]*)", README, re.MULTILINE))
    missing = make_targets() - {"help", "install", "clean"} - named
    assert not missing, f"make targets the README's command table leaves out: {missing}"
    for link in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / link).is_file(), link
    assert "seed style" not in README.lower().replace("-", " ")  # a term only docs/performance.md defines
