import math

import pytest
import torch

import lrt
from lrt.diagonal.log_engine import log_variable_flow
from lrt.experiments import ch01_conservation as ch01


def test_log_engine_matches_uv_flow_on_the_attention_toy():
    head = ch01.attention_toy()
    alpha = 1e-2
    u0, v0 = lrt.small_init(head.dim, alpha, generator=ch01.INIT_SEED)
    uv = lrt.gradient_flow(head, u0, v0, t_end=15.0, n_eval=61, rtol=1e-11)
    log = log_variable_flow(head, u0 / alpha, v0 / alpha, log_alpha=math.log(alpha), t_end=15.0, n_eval=61, rtol=1e-10, atol=1e-12)
    assert (uv.w - log.w).abs().max().item() < 1e-6


def crossing_time(path, level):
    """First time w crosses ``level``, by linear interpolation between samples."""
    k = (path.w[:, 0] >= level).nonzero()[0, 0].item()
    (t0, t1), (w0, w1) = path.t[k - 1 : k + 1].tolist(), path.w[k - 1 : k + 1, 0].tolist()
    return t0 + (level - w0) * (t1 - t0) / (w1 - w0)


def test_log_engine_stage_time_shifts_by_exactly_log_ratio_of_alphas():
    # F = (w − 1)²/2, ū = 1, v̄ = 0: while w ≪ 1 the solution is w = α²(e^{2t} − e^{−2t})/4, so dividing α by 10^100
    # delays the whole escape by exactly 100·log 10 (up to O(α²) terms); α = 1e-100 and 1e-200 underflow any
    # (u, v) integration but not the log engine. First-stage slope 1/|g(0)| = 1 (spec §4).
    problem = lrt.DiagonalLinearRegression(torch.eye(1), torch.ones(1))
    times = []
    for decades in (100, 200):
        log_alpha = -decades * math.log(10)
        t_end = -log_alpha + 10.0
        path = log_variable_flow(problem, torch.ones(1), torch.zeros(1), log_alpha=log_alpha, t_end=t_end, n_eval=int(t_end * 100) + 1)
        times.append(crossing_time(path, 0.5))
        assert path.w[-1, 0].item() == pytest.approx(1.0, abs=1e-6)
    # linear interpolation on a 0.01 grid and rtol 1e-8 leave errors far below 1e-3
    assert times[1] - times[0] == pytest.approx(100 * math.log(10), abs=1e-3)
    # and the linearised closed form t_1 = log(1/α) + ½ log(4c) is within the O(1) nonlinear correction
    assert 0 < times[0] - (100 * math.log(10) + 0.5 * math.log(2.0)) < 0.5


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (float("nan"), lrt.LrtError, "log_alpha: expected a finite real number"),
        (float("inf"), lrt.LrtError, "log_alpha: expected a finite real number"),
        ("small", lrt.LrtTypeError, "log_alpha: expected a real number .* got str"),
        (True, lrt.LrtTypeError, "log_alpha: expected a real number .* got bool"),
    ],
)
def test_log_alpha_must_be_a_finite_number(bad, error, message):
    problem = lrt.DiagonalLinearRegression(torch.eye(1), torch.ones(1))
    with pytest.raises(error, match=message):
        log_variable_flow(problem, torch.ones(1), torch.zeros(1), log_alpha=bad, t_end=1.0)
