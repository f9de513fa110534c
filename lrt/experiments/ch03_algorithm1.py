"""Chapter 3, *The α → 0 limit: Algorithm 1* (label ``ch-algorithm1``).

Algorithm 1 on the attention toy, gradient flow (log engine) converging to its staircase as α → 0,
the fast phase's independence of ε, a cross-check on a diagonal linear network (the limit ends at
the minimum-ℓ1 interpolator), and the ``staircase`` benchmark.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.optimize import linprog
from tqdm import tqdm

from lrt import (
    DiagonalLinearRegression,
    Staircase,
    algorithm1,
    below,
    crossing_times,
    gradient_descent,
    gradient_flow,
    log_variable_flow,
    rescaled_time,
    shown,
    small_init,
    staircase_distance,
)
from lrt.experiments.ch01_conservation import attention_toy
from lrt.experiments.ch02_small_init import attention_run, init_directions, log_alpha
from lrt.book.figures import register_figure
from lrt.book.ledger import Measurement, claim
from lrt.book.tasks import register_benchmark

CHAPTER = "ch-algorithm1"

#: α = 10^-e for the convergence study (α = 1e-2 … 1e-100).
EXPONENTS = (2, 4, 8, 16, 32, 64, 100)
#: the L1-in-τ distance at α = 1e-100 must be below this (≈ 0.8 % of ∫ F_∞ dτ ≈ 3.9 over [0, 3]).
DISTANCE_TOLERANCE = 0.03
EPSILONS = (1e-6, 1e-8, 1e-12)


@lru_cache(maxsize=None)
def attention_staircase(eps: float = 1e-8) -> Staircase:
    """Algorithm 1 on the attention toy of chapter 1.

    Defined in :ref:`ch-algorithm1`.
    """
    return algorithm1(attention_toy(), eps=eps, zero_level=min(1e-12, eps * 1e-2))


def midpoint_levels(stairs: Staircase) -> torch.Tensor:
    """Loss levels halfway between consecutive plateaus: a run's k-th stage time is its k-th crossing."""
    return (stairs.loss[:-1] + stairs.loss[1:]) / 2


@dataclass(frozen=True)
class Convergence:
    """Distances and stage times of the runs in ``exponents`` against one staircase."""

    exponents: tuple
    distance: np.ndarray  # (A,) L1-in-τ distance of the loss curves
    stage_times: np.ndarray  # (A, K) measured τ_k(α)
    limit_times: np.ndarray  # (K,) Algorithm 1's τ_k
    extrapolated: np.ndarray  # (K,) fit τ_k(α) = τ_k + c_k / log(1/α) over the four smallest α


def convergence(stairs: Staircase, runs: dict) -> Convergence:
    """Compare log-engine runs ``{exponent: LogTrajectory}`` with ``stairs`` in rescaled time.

    Defined in :ref:`ch-algorithm1`.
    """
    exponents = tuple(sorted(runs))
    dist, times = [], []
    for e in exponents:
        tau = rescaled_time(runs[e].t, runs[e].log_alpha)
        dist.append(staircase_distance(tau, runs[e].loss, stairs))
        times.append(crossing_times(tau, runs[e].loss, midpoint_levels(stairs)).numpy())
    times = np.array(times)
    x = np.array([1.0 / -log_alpha(e) for e in exponents])
    fit = np.polyfit(x[-4:], times[-4:], 1)
    return Convergence(exponents, np.array(dist), times, stairs.tau.numpy(), fit[1])


@lru_cache(maxsize=None)
def attention_convergence() -> Convergence:
    """:func:`convergence` on the attention toy over ``EXPONENTS``."""
    return convergence(attention_staircase(), {e: attention_run(e) for e in EXPONENTS})


@lru_cache(maxsize=None)
def epsilon_study() -> dict:
    """Largest change of the plateau points and stage times when the fast phase's seed ε varies."""
    base = attention_staircase(1e-8)
    out = {}
    for eps in EPSILONS:
        s = attention_staircase(eps)
        out[eps] = (float((s.w - base.w).abs().max()), float((s.tau - base.tau).abs().max()))
    return out


# --- the diagonal linear network (Pesme & Flammarion's saddle-to-saddle) -------------------------

LINEAR = dict(n_samples=10, dim=12, teacher={0: 3.0, 3: -2.0, 7: 1.0}, seed=2)
LINEAR_EXPONENTS = (4, 8, 16, 32, 64, 100)


@lru_cache(maxsize=None)
def sparse_regression() -> DiagonalLinearRegression:
    """An under-determined sparse regression: 10 samples, 12 features, a 3-sparse teacher.

    Defined in :ref:`ch-algorithm1`.
    """
    gen = torch.Generator().manual_seed(LINEAR["seed"])
    X = torch.randn(LINEAR["n_samples"], LINEAR["dim"], generator=gen, dtype=torch.float64)
    w_star = torch.zeros(LINEAR["dim"], dtype=torch.float64)
    for i, value in LINEAR["teacher"].items():
        w_star[i] = value
    return DiagonalLinearRegression(X, X @ w_star)


def min_l1_interpolator(problem: DiagonalLinearRegression) -> torch.Tensor:
    """argmin ‖w‖₁ subject to Xw = y, by linear programming (w = w⁺ − w⁻, w^± ≥ 0).

    Defined in :ref:`ch-algorithm1`.
    """
    X, y = problem.X.numpy(), problem.y.numpy()
    p = X.shape[1]
    res = linprog(np.ones(2 * p), A_eq=np.hstack([X, -X]), b_eq=y, bounds=(0, None), method="highs")
    return torch.from_numpy(res.x[:p] - res.x[p:])


@lru_cache(maxsize=None)
def linear_staircase() -> Staircase:
    return algorithm1(sparse_regression())


@lru_cache(maxsize=None)
def linear_convergence() -> Convergence:
    problem = sparse_regression()
    ubar, vbar = small_init(problem.dim, 1.0, generator=LINEAR["seed"] + 1)
    tau_end = 1.3 * linear_staircase().tau[-1].item()
    runs = {
        e: log_variable_flow(problem, ubar, vbar, log_alpha=log_alpha(e), t_end=tau_end * -log_alpha(e), n_eval=2001)
        for e in LINEAR_EXPONENTS
    }
    return convergence(linear_staircase(), runs)


# --- switching coordinates off: a correlated design ---------------------------------------------

#: 8 samples, 5 features with pairwise correlation 0.8, a dense Gaussian teacher plus noise (seed 32): a fast
#: phase switches a coordinate off, and it comes back later with the other sign.
CORRELATED = dict(n_samples=8, dim=5, rho=0.8, noise=0.3, seed=32)
#: α = 10^-e of the finite-α check on it; stage times are extrapolated by a quadratic in 1/log(1/α).
CORRELATED_EXPONENTS = (100, 200, 300)


@lru_cache(maxsize=None)
def correlated_regression() -> DiagonalLinearRegression:
    """Columns √(1−ρ) z_j + √ρ z_0 (z i.i.d. N(0, 1), a shared factor z_0), y = X w* + noise, w* ~ N(0, I).

    Defined in :ref:`ch-algorithm1`.
    """
    c = CORRELATED
    rng = np.random.default_rng(c["seed"])
    X = math.sqrt(1 - c["rho"]) * rng.standard_normal((c["n_samples"], c["dim"]))
    X = X + math.sqrt(c["rho"]) * rng.standard_normal((c["n_samples"], 1))
    y = X @ rng.standard_normal(c["dim"]) + c["noise"] * rng.standard_normal(c["n_samples"])
    return DiagonalLinearRegression(torch.from_numpy(X), torch.from_numpy(y))


@lru_cache(maxsize=None)
def correlated_staircase() -> Staircase:
    return algorithm1(correlated_regression())


@lru_cache(maxsize=None)
def correlated_convergence() -> dict:
    """Stage times of the log engine at α = 10^-e, e in ``CORRELATED_EXPONENTS`` (``times``, shape (3, K)),
    and their extrapolation to α → 0 (``extrapolated``, (K,)) by a quadratic in 1/log(1/α)."""
    problem, stairs = correlated_regression(), correlated_staircase()
    ubar, vbar = small_init(problem.dim, 1.0, generator=CORRELATED["seed"])
    tau_end = 1.1 * stairs.tau[-1].item()
    times = []
    for e in CORRELATED_EXPONENTS:
        la = log_alpha(e)
        run = log_variable_flow(problem, ubar, vbar, log_alpha=la, t_end=tau_end * -la, n_eval=40001, rtol=1e-10, atol=1e-12)
        times.append(crossing_times(rescaled_time(run.t, la), run.loss, midpoint_levels(stairs)).numpy())
    x = np.array([1 / -log_alpha(e) for e in CORRELATED_EXPONENTS])
    times = np.array(times)
    return {"times": times, "extrapolated": np.polyfit(x, times, 2)[-1]}


# --- claims -------------------------------------------------------------------------------------


@claim(
    "P1.alg1_convergence",
    chapter=CHAPTER,
    statement="As α → 0, the gradient-flow loss curve in rescaled time τ = t/log(1/α) converges to Algorithm 1's staircase (P1 Thm 4.1, our reconstruction).",
    prediction="L1-in-τ distance ∫_0^3 |F(w(τ log 1/α)) − F_∞(τ)| dτ on the attention toy, α = 1e-2, 1e-4, …, 1e-100 (log engine); measured = distance at α = 1e-100",
    tolerance="strictly decreasing in 1/α, and ≤ 0.03 at α = 1e-100 (≈ 0.8 % of ∫ F_∞ dτ; the jumps have width O(1/log(1/α)))",
)
def _alg1_convergence() -> Measurement:
    conv = attention_convergence()
    monotone = bool(np.all(np.diff(conv.distance) < 0))
    rel = np.abs(conv.extrapolated / conv.limit_times - 1).max()
    detail = (
        "distances " + ", ".join(shown(d, 3) for d in conv.distance)
        + f"; stage times extrapolated in 1/log(1/α) match Algorithm 1 to {below(rel, 1e-3, bound=1e-4)} (relative)"
    )
    return Measurement(float(conv.distance[-1]), monotone and conv.distance[-1] <= DISTANCE_TOLERANCE, detail)


# --- figures ------------------------------------------------------------------------------------


@register_figure("alg1-convergence", chapter=CHAPTER, caption="Left: L1-in-τ distance to the Algorithm 1 staircase against log(1/α), attention toy and diagonal linear network. Right: measured stage times against 1/log(1/α), extrapolating to Algorithm 1's τ_k (stars).")
def _figure_convergence():
    import matplotlib.pyplot as plt

    att, lin = attention_convergence(), linear_convergence()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.9))
    for conv, name in [(att, "attention toy"), (lin, "diagonal linear network")]:
        x = [-log_alpha(e) for e in conv.exponents]
        ax0.loglog(x, conv.distance, "o-", label=name)
    x = np.array([-log_alpha(e) for e in att.exponents])
    ax0.loglog(x, att.distance[0] * x[0] / x, "k:", lw=1, label=r"$\propto 1/\log(1/\alpha)$")
    ax0.set(xlabel=r"$\log(1/\alpha)$", ylabel="L1 distance in τ")
    ax0.legend(fontsize=8)
    for k in range(att.stage_times.shape[1]):
        line = ax1.plot(1 / x, att.stage_times[:, k], "o-", ms=3)[0]
        ax1.plot(0, att.limit_times[k], "*", ms=10, color=line.get_color())
    ax1.set(xlabel=r"$1/\log(1/\alpha)$", ylabel=r"stage time $\tau_k$", title="attention toy")
    fig.tight_layout()
    return fig


# --- benchmark ----------------------------------------------------------------------------------

BENCH_EXPONENTS = (2, 4, 8, 16, 32)
#: GD's stage-time error is ≈ 1.2 % × lr / 0.01 at α = 1e-32: 0.0075 is the largest round step within 1 %.
BENCH_LR = 0.0075
BENCH_TAU_END = 2.8
BENCH_METHODS = ("log", "uv", "gd", "gd_closed_form")
#: the benchmark's accuracy target: every method's stage times within 1 % of a tight reference.
BENCH_ACCURACY = 0.01
#: the log engine's tolerances, derived from the target: rtol = atol = target / 10 on G, whose scale is
#: log(1/α)·|β| (measured stage-time error about 0.2 % at rtol 1e-3, 0.5 % at 3e-3, 2.5 % at 1e-2 on this
#: toy; atol from 1e-6 to 1e-3 changes it by less than 0.05 %), with its exact Jacobian.
BENCH_LOG_RTOL = BENCH_ACCURACY / 10
BENCH_LOG_ATOL = BENCH_ACCURACY / 10
# Each method is run at its cheapest setting that stays within 1 % of the reference stage times: GD at the
# largest round step (its error is ≈ 0.93 % at 0.0075, linear in the step), the (u, v) solver at rtol 1e-4
# (stage-time error ≈ 0.1 %: a safety factor of 10, since adaptive error control is not exact).
#: beyond the benchmark's α set: the log engine's cost is measured, GD's step count is only computed
BEYOND_EXPONENTS = (64, 100)


def first_crossings(problem, tau, w, levels) -> torch.Tensor:
    """First time a decreasing loss F(w(τ)) falls to each level, by bisection over the samples: F is evaluated at
    O(log T) of them per level (a gradient-flow loss does not increase), then interpolated linearly as in
    :func:`lrt.crossing_times` (``nan`` where it never gets there).

    >>> problem = DiagonalLinearRegression(torch.eye(1), torch.ones(1))
    >>> w = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    >>> first_crossings(problem, torch.arange(11.0), w, torch.tensor([0.125, -1.0]))
    tensor([5., nan])

    Defined in :ref:`ch-algorithm1`.
    """
    cache = {}

    def F(j):
        if j not in cache:
            cache[j] = problem.losses(w[j : j + 1])[0].item()
        return cache[j]

    last, out = len(tau) - 1, []
    for level in levels.tolist():
        if F(last) > level:
            out.append(math.nan)
            continue
        lo, hi = 0, last
        if F(0) <= level:
            out.append(tau[0].item())
            continue
        while hi - lo > 1:  # F(lo) > level ≥ F(hi)
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if F(mid) <= level else (mid, hi)
        frac = (F(lo) - level) / (F(lo) - F(hi))
        out.append(tau[lo].item() + frac * (tau[hi] - tau[lo]).item())
    return torch.tensor(out, dtype=torch.float64)


def _bench_one(method: str, exponent: float, stairs: Staircase, lr: float):
    """Wall time, stage times and gradient evaluations of one method at α = 10^-exponent."""
    problem = attention_toy()
    ubar, vbar = init_directions()
    la = log_alpha(exponent)
    t_end = BENCH_TAU_END * -la
    alpha = math.exp(la)
    start = (time.process_time(), time.perf_counter())
    if method == "log":  # sampled at the solver's own steps: dense in the jumps, sparse on plateaus
        path = log_variable_flow(
            problem, ubar, vbar, log_alpha=la, t_end=t_end, n_eval=None, rtol=BENCH_LOG_RTOL, atol=BENCH_LOG_ATOL, loss=False
        )
        times = first_crossings(problem, path.t / -la, path.w, midpoint_levels(stairs))
        return _elapsed(start), times, path.n_grad, path.n_hessian
    elif method == "uv":
        path = gradient_flow(problem, alpha * ubar, alpha * vbar, t_end=t_end, n_eval=None, method="LSODA", rtol=1e-4)
    else:
        gradient = "autograd" if method == "gd" else "closed_form"
        path = gradient_descent(problem, alpha * ubar, alpha * vbar, lr=lr, steps=int(round(t_end / lr)), gradient=gradient)
    times = crossing_times(path.t / -la, path.loss, midpoint_levels(stairs))
    return _elapsed(start), times, path.n_grad, getattr(path, "n_hessian", 0)


def _elapsed(start) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) since ``start``: the ratios use CPU time, which other processes on a
    shared machine do not inflate (every method runs in one thread here)."""
    return time.process_time() - start[0], time.perf_counter() - start[1]


def staircase_benchmark(quick: bool = False, lr: float = BENCH_LR) -> dict:
    """Time the staircase (stage times for every α in ``BENCH_EXPONENTS``) by the log engine, the (u, v)
    flow and gradient descent (plain torch autograd, and with the closed-form gradient), side by side;
    check each against a tight log-engine reference (1 %). Every method runs in one thread (torch and BLAS)
    and is timed in process CPU time, which other processes on a shared machine do not inflate.

    Returns:
        a dict with ``ratios`` (``gd_over_log``, ``uv_over_log``, ``gd_closed_form_over_log``: total CPU
        time of the baseline over that of the log engine; ``wall_ratios`` the same in wall-clock time), ``seconds``, ``gradient_evaluations`` (and
        ``log_hessian_evaluations``: the log engine's exact Jacobians), ``log_rtol``,
        ``max_stage_time_error``, ``within_1_percent``, ``per_alpha`` and ``beyond`` (α = 1e-64, 1e-100:
        the log engine's evaluations, and the number of GD steps those α would need).

    Defined in :ref:`ch-algorithm1`.
    """
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            return _staircase_benchmark(quick, lr)
    finally:
        torch.set_num_threads(threads)


def _staircase_benchmark(quick: bool, lr: float) -> dict:
    stairs = attention_staircase()
    exponents = BENCH_EXPONENTS[:2] if quick else BENCH_EXPONENTS
    methods = BENCH_METHODS[:2] + BENCH_METHODS[3:] if quick else BENCH_METHODS
    ubar, vbar = init_directions()
    totals = {m: 0.0 for m in methods}
    walls = {m: 0.0 for m in methods}
    evals = {m: 0 for m in methods}
    errors = {m: 0.0 for m in methods}
    hessians = 0
    rows = []
    for e in tqdm(exponents, desc="bench staircase (per α)", disable=None):  # a bar on a terminal only
        la = log_alpha(e)
        ref = log_variable_flow(
            attention_toy(), ubar, vbar, log_alpha=la, t_end=BENCH_TAU_END * -la, n_eval=5601, rtol=1e-11, atol=1e-13
        )
        ref_times = crossing_times(ref.t / -la, ref.loss, midpoint_levels(stairs))
        row = {"alpha": f"1e-{e}"}
        for method in methods:
            (seconds, wall), times, n_grad, n_hessian = _bench_one(method, e, stairs, lr)
            err = float((times / ref_times - 1).abs().max())
            totals[method] += seconds
            walls[method] += wall
            evals[method] += n_grad
            hessians += n_hessian
            errors[method] = max(errors[method], err)
            row[method] = {"seconds": round(seconds, 4), "gradient_evaluations": n_grad, "stage_time_error": err}
        rows.append(row)
    beyond = []
    for e in () if quick else BEYOND_EXPONENTS:
        (seconds, _), _, n_grad, _ = _bench_one("log", e, stairs, lr)
        beyond.append({"alpha": f"1e-{e}", "log_seconds": round(seconds, 4), "log_gradient_evaluations": n_grad,
                       "gd_steps_needed": int(round(BENCH_TAU_END * -log_alpha(e) / lr))})
    return {
        "ratios": {f"{m}_over_log": totals[m] / totals["log"] for m in methods if m != "log"},
        "clock": "process CPU time (wall_* for wall-clock time, which other processes on the machine inflate)",
        "seconds": totals,
        "wall_ratios": {f"{m}_over_log": walls[m] / walls["log"] for m in methods if m != "log"},
        "wall_seconds": walls,
        "gradient_evaluations": evals,
        "log_hessian_evaluations": hessians,
        "log_rtol": BENCH_LOG_RTOL,
        "max_stage_time_error": errors,
        "within_1_percent": {m: errors[m] <= BENCH_ACCURACY for m in errors},
        "gd_lr": lr,
        "per_alpha": rows,
        "beyond": beyond,
    }


@register_benchmark("staircase", chapter=CHAPTER, description="stage times for α = 1e-2 … 1e-32: log engine vs (u, v) flow vs gradient descent")
def _bench_staircase(quick: bool) -> dict:
    return staircase_benchmark(quick)
