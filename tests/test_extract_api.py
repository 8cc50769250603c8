"""extract.api: extraction from Python with settings in Python's terms; the command is a thin layer that names
flags. Real extractions (random VGG16 weights) of the fixture images."""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest
from conftest import CIFAR_FIXTURE, PHOTOS_FIXTURE, ROOT, error_line, invoke_extract

from extract import api
from featurecache.command import flagged as flag_message
from featurecache.cache import read_cache
from featurecache.errors import SettingError, UserError


def test_extract_from_python_writes_the_cache_the_command_writes(tmp_path):
    lines = []
    out = api.extract(PHOTOS_FIXTURE, backbone="vgg16", out=tmp_path / "py.h5", weights="none", log=lines.append,
                      progress=False)
    assert out == tmp_path / "py.h5" and out.is_file()
    assert any(line.startswith("extract: cats-vs-dogs") for line in lines)
    assert any(line.startswith("settings: ") for line in lines)
    r = invoke_extract("--data-dir", PHOTOS_FIXTURE, "--weights", "none", "--out", tmp_path / "cli.h5")
    assert r.exit_code == 0, r.output
    py, cli = read_cache(out), read_cache(tmp_path / "cli.h5")
    assert list(py.class_names) == list(cli.class_names) and list(py.train.sources) == list(cli.train.sources)
    np.testing.assert_allclose(py.train.features, cli.train.features, atol=1e-5)
    # the same call again finds the cache up to date and returns it
    again = api.run_extraction(api.make_config(data_dir=str(PHOTOS_FIXTURE), weights="none", out=str(out)))
    assert again.status == "up-to-date" and again.out == out


@pytest.mark.parametrize("settings, setting", [
    ({"test_fraction": 1.5}, "test_fraction"),
    ({"image_size": 4}, "image_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"limit": 2.5}, "limit"),
    ({"pooling": "max"}, "pooling"),
    ({"engine": "spark"}, "engine"),
    ({"workers": 2}, "workers"),          # workers without engine="ray"
    ({"shard": "3/2"}, "shard"),
    ({"out": "."}, "out"),
    ({"pooling_": "gap"}, "pooling_"),    # not a setting at all
])
def test_a_wrong_setting_is_one_setting_error_in_python_terms(settings, setting, tmp_path):
    with pytest.raises(SettingError) as e:
        api.extract(CIFAR_FIXTURE, weights="none", **{"out": tmp_path / "x.h5", **settings})
    assert e.value.setting == setting and setting in e.value.message
    assert "--" not in e.value.message, e.value.message
    assert list(tmp_path.iterdir()) == []


def test_library_errors_name_the_setting_and_the_command_names_the_flag(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SettingError) as e:
        api.extract(missing, weights="none", out=tmp_path / "x.h5")
    assert e.value.setting == "data_dir" and f"data_dir={str(missing)!r}" in e.value.message
    assert "--data-dir" not in e.value.message
    line = error_line(invoke_extract("--data-dir", missing, "--weights", "none", "--out", tmp_path / "x.h5"), 1)
    assert f"--data-dir {missing} does not exist" in line and "data_dir=" not in line
    with pytest.raises(SettingError, match=r"backbone='vgg17' is neither a known backbone") as e:
        api.extract(CIFAR_FIXTURE, backbone="vgg17", weights="none", out=tmp_path / "x.h5")
    assert e.value.setting == "backbone"


def test_flag_message_rewrites_settings_of_the_command_only():
    flags = {"test_fraction": "--test-fraction", "out": "--out", "force": "--force", "no_wait": "--no-wait"}
    assert flag_message("test_fraction=0.5 leaves a class; pass `test_fraction` nearer 0.5", flags) == \
        "--test-fraction 0.5 leaves a class; pass --test-fraction nearer 0.5"
    assert flag_message("choose another `out` (force=True would replace it), out='a b.h5'", flags) == \
        "choose another --out (--force would replace it), --out a b.h5"
    assert flag_message("run again without no_wait=True", flags) == "run again without --no-wait"
    # a name that is not this command's setting, inside a cause or a path, is left as it is
    assert flag_message("(Received: input_shape=(1, 2)) in /a/out=3", flags) == "(Received: input_shape=(1, 2)) in /a/out=3"


# messages that tests pin in flag form where the library is called directly; their callers are not extract's
# command (predict names --allow-weights-mismatch and --runtime) or the test calls the loader itself
PINNED = {("extract/folders.py", "--limit"), ("featurecache/extractor.py", "--allow-weights-mismatch"),
          ("featurecache/extractor.py", "--runtime"), ("featurecache/extractor.py", "--precision")}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
QUOTED = re.compile(r"`[^`]*`")  # another tool's command line (`ray start --head`) is no flag of ours


def extract_side() -> list:
    library = [p for p in sorted((ROOT / "extract").glob("*.py")) if p.name not in ("cli.py", "__main__.py")]
    return library + [ROOT / "featurecache" / name for name in ("images.py", "cifar.py", "extractor.py")]


def test_the_extract_side_raises_no_click_exception_and_names_no_flag():
    found = []
    for path in extract_side():
        name = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{name}:{node.lineno} imports {m}" for m in modules if m.split(".")[0] == "click"]
            if isinstance(node, ast.Raise) and node.exc is not None:
                text = QUOTED.sub("", " ".join(n.value for n in ast.walk(node.exc)
                                               if isinstance(n, ast.Constant) and isinstance(n.value, str)))
                found += [f"{name}:{node.lineno} names {flag}" for flag in FLAG.findall(text) if (name, flag) not in PINNED]
        for node in ast.walk(tree):  # module-level message constants raised elsewhere (ray_engine.INSTALL)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                if any(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets):
                    found += [f"{name}:{node.lineno} names {flag}" for flag in FLAG.findall(node.value.value)]
    assert not found, "\n".join(found)


def test_setting_error_is_a_user_error_and_a_value_error():
    e = SettingError("x is wrong; pass test_fraction=0.3")
    assert isinstance(e, UserError) and isinstance(e, ValueError) and e.setting == "test_fraction"
    assert SettingError("no setting named here").setting is None
