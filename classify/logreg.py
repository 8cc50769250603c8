"""Multinomial logistic regression fitted with L-BFGS-B, keeping the solver's path.

The objective is scikit-learn's for `LogisticRegression(solver="lbfgs")`: the
mean cross-entropy of a softmax over all classes plus ||W||^2 / (2 C n), the
intercepts unpenalised, minimised from zeros by scipy's L-BFGS-B with the same
stopping rules (`gtol=tol`, `ftol=64 eps`, `maxls=50`). The tests check it
against scikit-learn. It is written out here for one reason: scikit-learn's
estimator gives no per-iteration hook, so drawing loss against solver
iterations meant restarting the solver every few iterations, which bent the
path it drew (132 iterations instead of 104 to converge on 4,500 x 512
features) and took longer than the fit itself.

BLAS runs on one thread here. Each iteration is two thin matrix products
((n, D) x (D, k), k classes) between single-threaded numpy and L-BFGS steps,
and BLAS threads that spin between products slowed the whole fit down:
measured on a 2-core CPU, 4,500 x 512 rows: 0.43 s on one thread, 1.2 s on
two; 45,000 x 512: 0.8 s against 1.0 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits


@dataclass
class Fit:
    coef: np.ndarray            # (k, D) float64, one row per class in `classes`
    intercept: np.ndarray       # (k,)
    classes: np.ndarray         # (k,) the labels seen, sorted
    iterations: int
    converged: bool             # False: stopped at max_iter (or the line search gave up)
    # (iteration, solver point) every `stride` iterations, stride doubling to keep at most
    # 2 x path_points of them, and the last iteration's; [] unless asked for
    path: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def params(self) -> np.ndarray:
        return np.concatenate([self.coef.ravel(), self.intercept])


def fit(X: np.ndarray, y: np.ndarray, C: float, max_iter: int, tol: float = 1e-4,
        start: Fit | None = None, path_points: int = 0) -> Fit:
    """Fit on X (n, D) float32, already standardised, and labels y (n,). `start`: a previous fit on
    the same rows and classes to begin from (the C sweep); `path_points`: keep about that many
    evenly spaced iterates (memory stays bounded however long the solver runs)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    classes, yi = np.unique(y, return_inverse=True)
    n, D = X.shape
    k = len(classes)
    rows = np.arange(n)
    l2 = 1.0 / (C * n)

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = w[: k * D].reshape(k, D), w[k * D:]
        Z = (X @ W.T.astype(np.float32)).astype(np.float64) + b          # (n, k) class scores
        Z -= Z.max(axis=1, keepdims=True)
        E = np.exp(Z)
        S = E.sum(axis=1)
        loss = np.mean(np.log(S) - Z[rows, yi]) + 0.5 * l2 * np.dot(w[: k * D], w[: k * D])
        G = E / S[:, None]                                                  # softmax, then minus one-hot
        G[rows, yi] -= 1.0
        G /= n
        gW = (G.T.astype(np.float32) @ X).astype(np.float64) + l2 * W      # (k, D)
        return loss, np.concatenate([gW.ravel(), G.sum(axis=0)])

    x0 = start.params() if start is not None else np.zeros(k * D + k)
    path: list[tuple[int, np.ndarray]] = []
    state = {"iteration": 0, "stride": 1}

    def record(xk: np.ndarray) -> None:
        state["iteration"] += 1
        if state["iteration"] % state["stride"] == 0:
            path.append((state["iteration"], xk.copy()))
        if len(path) > 2 * path_points:
            state["stride"] *= 2
            path[:] = [p for p in path if p[0] % state["stride"] == 0]

    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(loss_grad, x0, jac=True, method="L-BFGS-B", callback=record if path_points else None,
                          options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps})
    w = result.x
    if path_points and (not path or path[-1][0] != result.nit):
        path.append((int(result.nit), w.copy()))
    return Fit(w[: k * D].reshape(k, D), w[k * D:], classes, int(result.nit), bool(result.status == 0), path)


def proba(X: np.ndarray, params: np.ndarray, k: int) -> np.ndarray:
    """Softmax probabilities (n, k) of standardised rows X at solver point `params`."""
    D = X.shape[1]
    Z = X @ params[: k * D].reshape(k, D).T + params[k * D:]
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)
