"""Runs trained ahead of the main thread's (`featurecache compare`): lr, rf and knn train, and their
figures are drawn, while the main thread imports TensorFlow and trains the MLP.

Where the platform forks (Linux) and TensorFlow is not loaded yet, they go to a worker process, which
has an interpreter lock of its own: scikit-learn's Python and matplotlib's drawing never wait on the
main thread's, nor it on theirs. Elsewhere they go to a daemon thread. Either way nothing is written
to disk ahead: the worker hands back each run's result, its figures (PNG bytes) and its model file
(bytes), and the main thread writes every run's files and row in order, as they come. A run the
worker process could not finish (an error there, the worker killed) resolves to `NotAhead`, and the
main thread trains it again itself, where an error is raised as it would be without a worker.

The worker ignores Ctrl-C (the terminal sends it to the whole process group; the main process stops
the command and ends the worker as it exits) and dies with the main process, even one killed outright.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

IN_MAIN_THREAD = ("mlp",)   # Keras trains in the main thread, where Ctrl-C and SIGTERM stop it

__all__ = ["IN_MAIN_THREAD", "Ahead", "NotAhead", "fits_twice", "can_fork", "train_ahead"]


@dataclasses.dataclass(frozen=True)
class NotAhead:
    """A run the worker process did not finish: the main thread trains it itself. `why` is None where
    the run failed there (the main thread raises the same error), else what became of the worker."""

    why: str | None = None


def fits_twice(cache, cfg) -> bool:
    """Whether two runs' copies of the cache's feature matrices fit --max-memory at once (a run on a
    streamed cache holds a memory budget of its own, so it never trains beside another)."""
    from classify.training.data import IN_MEMORY_COPIES, memory_budget

    if cache.train.features is None:
        return False
    held = sum(a.nbytes for s in (cache.train, cache.test) for a in (s.features, s.views) if a is not None)
    return 2 * IN_MEMORY_COPIES * held <= memory_budget(cfg.max_memory)


def can_fork() -> bool:
    """A worker process may be forked: Linux (fork is unsafe on macOS, absent on Windows), and
    TensorFlow, whose runtime threads do not survive a fork, not loaded yet."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and "tensorflow" not in sys.modules)


class Ahead(dict):
    """{index in runs: Future} of the runs trained ahead, and `where`: "a worker process" or "a thread"."""

    where = ""


def train_ahead(runs: list[tuple], process: bool | None = None) -> Ahead:
    """Train the runs (cache, cfg) that may go beside the main thread's (not IN_MAIN_THREAD, in memory,
    on a machine of two cores or more), one after another in their order, in a worker process
    (`process`: None = where `can_fork`) or a daemon thread. Returns, by index in `runs`, futures of
    (RunResult, Figures), or of `NotAhead` for a run the main thread must train itself."""
    ahead = Ahead()
    if (os.cpu_count() or 1) < 2 or len(runs) < 2:
        return ahead
    ahead.update({i: Future() for i, (cache, cfg) in enumerate(runs)
                  if cfg.model not in IN_MAIN_THREAD and fits_twice(cache, cfg)})
    if ahead:
        forked = can_fork() if process is None else process
        (in_process if forked else in_thread)(runs, ahead)
        ahead.where = "a worker process" if forked else "a thread"
    return ahead


def finished(cache, cfg):
    """One run trained, scored and drawn: (RunResult, Figures)."""
    from classify.runs.outputs import draw_run
    from classify.training.train import train_and_evaluate

    result = train_and_evaluate(cache, cfg)
    return result, draw_run(cache, cfg, result)


def in_thread(runs: list[tuple], ahead: dict[int, Future]) -> None:
    """The runs in a daemon thread: a compare stopped part-way exits without waiting for it. An error
    is raised where the main thread takes that run's result."""

    def work() -> None:
        for i, future in ahead.items():
            future.set_running_or_notify_cancel()
            try:
                future.set_result(finished(*runs[i]))
            except BaseException as e:
                future.set_exception(e)

    threading.Thread(target=work, name="compare-train-ahead", daemon=True).start()


# --------------------------------------------------------------------------- worker process


def in_process(runs: list[tuple], ahead: dict[int, Future]) -> None:
    """The runs in a forked worker process (it starts with the caches already in memory); a thread
    of this process receives each result and resolves its future, or `NotAhead` for each run the
    worker did not finish (it failed there, or the worker ended early)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    for stream in (sys.stdout, sys.stderr):   # else text buffered here is written twice, once by the worker
        stream.flush()
    worker = context.Process(target=work_in_process, args=(runs, list(ahead), sender, os.getpid()),
                             name="compare-train-ahead", daemon=True)
    worker.start()
    sender.close()

    def receive() -> None:
        pending = dict(ahead)
        while pending:
            try:
                i, payload = receiver.recv()
            except Exception:   # the worker ended (killed, out of memory), perhaps part-way through a message
                break
            future = pending.pop(i)
            try:
                future.set_result(NotAhead() if payload is None else rebuilt(runs[i][0], runs[i][1], payload))
            except Exception:
                future.set_result(NotAhead())
        receiver.close()
        worker.join()
        for future in pending.values():
            future.set_result(NotAhead(f"the worker process ended early ({ended(worker.exitcode)})"))

    threading.Thread(target=receive, name="compare-receive", daemon=True).start()


def ended(code: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that ended it)."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def work_in_process(runs: list[tuple], indices: list[int], sender, parent: int) -> None:
    """The worker: each run finished and sent as plain data; a run that fails is sent as None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the command's handler, inherited with the fork
    die_with(parent)
    for i in indices:
        try:
            payload = portable(*runs[i])
        except Exception:
            payload = None
        try:
            send(sender, (i, payload))
        except OSError:   # the main process is gone, or stopped listening
            return
    sender.close()


def send(sender, message: tuple) -> None:
    """Send (i, payload); a payload that does not pickle goes as None (the main thread trains that run)."""
    try:
        sender.send(message)
    except OSError:
        raise
    except Exception:
        sender.send((message[0], None))


def die_with(parent: int) -> None:
    """Have the kernel end this process when its parent exits, however it exits (Linux prctl
    PR_SET_PDEATHSIG); and end now if the parent is gone already."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


def portable(cache, cfg) -> dict:
    """A finished run as data that pickles: the result without its model's functions, the figures,
    and the model file's bytes (written by the model's own save)."""
    from classify.runs.outputs import model_bytes
    from classify.training.specs import SPECS

    result, figures = finished(cache, cfg)
    model = model_bytes(result.trained, SPECS[cfg.model].suffix)
    t = result.trained
    return {"result": dataclasses.replace(result, trained=None), "figures": figures, "model": model,
            "format": t.format, "history": t.history, "details": t.details}


def rebuilt(cache, cfg, payload: dict):
    """(RunResult, Figures) from a worker's payload: its Trained saves the model file's bytes and
    predicts through the model's own loader."""
    from classify.runs.trained import Trained
    from classify.training.specs import SPECS

    spec, model = SPECS[cfg.model], payload["model"]

    def save(target) -> None:
        if hasattr(target, "write"):
            target.write(model)
        else:
            Path(target).write_bytes(model)

    def predict_proba(X):
        with tempfile.TemporaryDirectory(prefix="featurecache-ahead-") as tmp:
            path = Path(tmp) / f"model{spec.suffix}"
            path.write_bytes(model)
            return spec.load(path, len(cache.class_names))(X)

    trained = Trained(predict_proba=predict_proba, save=save, format=payload["format"],
                      history=payload["history"], details=payload["details"])
    return dataclasses.replace(payload["result"], trained=trained), payload["figures"]
