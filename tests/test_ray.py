"""--engine ray: a Ray Data pipeline on this machine (`ray.init(num_cpus=2)`), random weights, real images.

Slow: Ray and two TensorFlow actors start in tens of seconds on two cores, so the tests share one Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import CIFAR_FIXTURE, PHOTOS_FIXTURE, ROOT, assert_same_cache, error_line, invoke_extract

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_ray_two_workers_equal_the_single_process_on_photos(ray_cluster, tmp_path):
    """Photos (with broken files) through 2 actors: same labels, sources, skipped files and features."""
    common = ["--data-dir", PHOTOS_FIXTURE, "--weights", "none", "--batch-size", "8"]
    r = invoke_extract(*common, "--out", tmp_path / "one.h5")
    assert r.exit_code == 0, r.output
    r = invoke_extract(*common, "--out", tmp_path / "ray.h5", "--engine", "ray", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert "img/s over the pool" in r.output
    assert_same_cache(tmp_path / "one.h5", tmp_path / "ray.h5", atol=1e-2)


def test_killed_ray_run_resumes_to_the_same_cache(ray_cluster, tiny_cache, tmp_path):
    """kill -9 of the driver once parts are on disk; the same command resumes the missing parts."""
    out = tmp_path / "c.h5"
    args = [sys.executable, "-m", "extract", "--data-dir", str(CIFAR_FIXTURE), "--weights", "none", "--out", str(out),
            "--engine", "ray", "--workers", "2", "--batch-size", "8", "--checkpoint-every", "8"]
    p = subprocess.Popen(args + ["--address", ray_cluster], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    partial = tmp_path / "c.h5.partial"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(partial.glob("*.npz"))) < 2 and p.poll() is None:
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = len(list(partial.glob("*.npz")))
    assert 2 <= done < 15 and not out.exists(), done  # 13 train + 3 test parts; killed part-way
    r = invoke_extract(*args[3:])
    assert r.exit_code == 0, r.output
    assert "resumed" in r.output and not partial.exists()
    assert_same_cache(tiny_cache, out, atol=1e-2)


def test_unreachable_address_and_zero_workers_are_one_line(tmp_path):
    common = ["--data-dir", CIFAR_FIXTURE, "--weights", "none", "--out", tmp_path / "x.h5", "--engine", "ray"]
    assert "--workers 0" in error_line(invoke_extract(*common, "--workers", "0"), 1)
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in error_line(
        invoke_extract(*common, "--address", "127.0.0.1:9"), 1)
    assert list(tmp_path.iterdir()) == []


def test_without_ray_the_engine_says_how_to_install_it(tmp_path):
    """A Python that cannot import ray (a path entry that shadows it with a broken module)."""
    fake = tmp_path / "fake"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(fake), str(ROOT)))}
    r = subprocess.run([sys.executable, "-m", "extract", "--data-dir", str(CIFAR_FIXTURE), "--weights", "none",
                        "--out", str(tmp_path / "x.h5"), "--engine", "ray"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["Error: --engine ray needs Ray, which is not installed: "
                                             "pip install -e '.[distributed]' (or make install)"]
