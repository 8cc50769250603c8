"""compare trains the runs other than the MLP ahead, beside the main thread (here in a thread, the path
where a process cannot be forked; tests/test_compare_worker.py has the worker process): the same results
as one run at a time, and the main thread still writes every run's files and row in order."""

from __future__ import annotations

import json

from classify.options import make_config
from classify.training.train import load_for_training
from classify.commands import compare
from conftest import alone_run, assert_same_run, blob_cache, invoke


def test_runs_trained_ahead_equal_runs_trained_alone(tmp_path):
    cache = blob_cache(tmp_path / "blobs.h5", n_train=400, n_test=120, spread=1.0)
    runs = [(load_for_training(cache, make_config(model=m)), make_config(model=m, features=str(cache)))
            for m in ("lr", "mlp", "rf")]
    ahead = compare.train_ahead(runs, process=False)
    assert ahead.where == "a thread"
    assert sorted(ahead) == [0, 2]   # lr and rf beside the main thread; the MLP in it
    (lr, lr_figures), (rf, rf_figures) = ahead[0].result(), ahead[2].result()
    assert (lr.trained.format, rf.trained.format) == ("linear", "forest")
    # each run's figures drawn in that thread too, as PNG bytes the main thread only writes
    for figures in (lr_figures, rf_figures):
        assert {"curves", "confusion", "reliability"} <= set(figures.png)
        assert all(data.startswith(b"\x89PNG") for data in figures.png.values())

    out = tmp_path / "compare"
    result = invoke(compare.cli, ["--features", cache, "--model", "lr", "--model", "rf", "--out-dir", out,
                                  "--n-estimators", "50"])
    assert result.exit_code == 0, result.output
    assert result.output.index("compare: lr on") < result.output.index("compare: rf on")   # recorded in order
    for model in ("lr", "rf"):
        b = alone_run(cache, model, tmp_path / f"alone-{model}", *(["--n-estimators", "50"] if model == "rf" else []))
        assert_same_run(json.loads(next(out.glob(f"*-{model}-*-run.json")).read_text()), b)
