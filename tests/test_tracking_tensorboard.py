"""classify --model mlp --tensorboard DIR: Keras's TensorBoard callback writes one folder of event
files per fit; without the tensorboard package the option is one line and nothing is written."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from classify.cli import cli as classify_cli
from conftest import error_line


def classify(*args):
    return CliRunner().invoke(classify_cli, [str(a) for a in args])


def test_mlp_writes_tensorboard_event_files(tiny_cache, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed: pip install -e '.[tracking]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = classify("--model", "mlp", "--epochs", "2", "--hidden", "16", "--features", tiny_cache,
                 "--out-dir", tmp_path / "out", "--tensorboard", tmp_path / "tb")
    assert r.exit_code == 0, r.output
    (fit,) = (tmp_path / "tb").iterdir()
    assert fit.name.startswith("mlp-") and fit.name.endswith("-seed0")
    for split in ("train", "validation"):
        events = EventAccumulator(str(fit / split))
        events.Reload()
        assert "epoch_loss" in events.Tags()["tensors"], events.Tags()
    assert not any(p.name == "tb" for p in (tmp_path / "out").iterdir())  # logs stay out of the reports folder


def test_without_tensorboard_the_option_is_one_line(tiny_cache, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    r = classify("--model", "mlp", "--epochs", "1", "--hidden", "8", "--features", tiny_cache,
                 "--out-dir", tmp_path / "out", "--tensorboard", tmp_path / "tb")
    assert isinstance(r.exception, SystemExit)
    assert "--tensorboard needs the tensorboard package" in error_line(r, 1)
    assert not (tmp_path / "tb").exists() and not list((tmp_path / "out").glob("*-run.json"))
