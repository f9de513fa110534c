import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import lrt
from lrt.experiments import ch01_conservation as ch01


def logistic(t, w0, target):
    """Exact w(t) for u = v (balanced), F = (w − target)²/2 in one coordinate: w' = −2w(w − target)."""
    return target / (1 + (target / w0 - 1) * math.exp(-2 * target * t))


@pytest.mark.parametrize("method, rtol, tol", [("DOP853", 1e-10, 1e-8), ("RK45", 1e-8, 1e-6), ("LSODA", 1e-8, 1e-5)])
def test_gradient_flow_matches_the_logistic_closed_form(method, rtol, tol):
    target = torch.tensor([1.5, 0.7])
    problem = lrt.DiagonalLinearRegression(torch.eye(2) * math.sqrt(2), target * math.sqrt(2))  # F = ‖w − target‖²/2
    u0 = torch.tensor([0.1, 0.05])
    path = lrt.gradient_flow(problem, u0, u0.clone(), t_end=8.0, n_eval=33, method=method, rtol=rtol)
    exact = torch.tensor([[logistic(t, 0.01, 1.5), logistic(t, 0.0025, 0.7)] for t in path.t.tolist()])
    assert (path.w - exact).abs().max().item() < tol


def test_gradient_descent_converges_to_the_flow_as_the_step_shrinks():
    target = torch.tensor([1.0])
    problem = lrt.DiagonalLinearRegression(torch.eye(1), target)
    errors = []
    for lr in (0.02, 0.01):
        path = lrt.gradient_descent(problem, torch.tensor([0.1]), torch.tensor([0.1]), lr=lr, steps=int(3 / lr))
        errors.append(abs(path.w[-1].item() - logistic(3.0, 0.01, 1.0)))
    assert errors[1] < 0.6 * errors[0]  # first order: halving the step halves the error


class SmoothLoss(lrt.DiagonalProblem):
    """A random smooth loss of w: quadratic + sine terms; gradient by autograd (the generic path)."""

    def __init__(self, seed, p):
        g = torch.Generator().manual_seed(seed)
        self.dim = p
        self.A = torch.randn(p, p, generator=g)
        self.b = torch.randn(p, generator=g)
        self.c = torch.randn(p, generator=g)

    def loss(self, w):
        r = self.A @ w - self.b
        return 0.5 * (r @ r) / self.dim + (self.c * torch.sin(w)).sum() * 0.1


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), p=st.integers(1, 5), alpha=st.floats(1e-3, 1.0))
def test_property_flow_conserves_u2_minus_v2_for_random_smooth_losses(seed, p, alpha):
    problem = SmoothLoss(seed, p)
    u0, v0 = lrt.small_init(p, alpha, generator=seed)
    path = lrt.gradient_flow(problem, u0, v0, t_end=5.0, n_eval=11, rtol=1e-10)
    assert lrt.invariant_drift(path).max().item() <= 1e-9


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), p=st.integers(1, 5), lr=st.floats(1e-3, 0.1))
def test_property_one_descent_step_multiplies_the_invariant_by_one_minus_eta2_g2(seed, p, lr):
    problem = SmoothLoss(seed, p)
    u0, v0 = lrt.small_init(p, 1.0, generator=seed)
    path = lrt.gradient_descent(problem, u0, v0, lr=lr, steps=1)
    g = problem.grad(u0 * v0)
    c0, c1 = u0**2 - v0**2, path.invariant[-1]
    np.testing.assert_allclose(c1.numpy(), (c0 * (1 - lr**2 * g**2)).numpy(), rtol=1e-10, atol=1e-14)


def test_the_invariant_is_not_conserved_by_descent_a_test_that_can_fail():
    problem = SmoothLoss(0, 3)
    u0, v0 = lrt.small_init(3, 0.5, generator=0)
    path = lrt.gradient_descent(problem, u0, v0, lr=0.1, steps=50)
    assert lrt.invariant_drift(path).max().item() > 1e-6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(t_end=0.0), "t_end: expected a number > 0"),
        (dict(t_end=float("nan")), "t_end: expected a finite number"),
        (dict(t_end=1.0, method="euler"), "method: unknown value 'euler'; expected one of DOP853"),
        (dict(t_end=1.0, n_eval=1), "n_eval: expected an int >= 2"),
    ],
)
def test_gradient_flow_validates_its_arguments(kwargs, message):
    problem = lrt.DiagonalLinearRegression(torch.eye(2), torch.ones(2))
    with pytest.raises(lrt.LrtError, match=message):
        lrt.gradient_flow(problem, torch.ones(2), torch.ones(2), **kwargs)


def test_start_shapes_and_problem_type_are_checked():
    problem = lrt.DiagonalLinearRegression(torch.eye(2), torch.ones(2))
    with pytest.raises(lrt.LrtError, match=r"u0: expected shape \(2,\)"):
        lrt.gradient_descent(problem, torch.ones(3), torch.ones(2), lr=0.1, steps=1)
    with pytest.raises(TypeError, match="problem: expected a DiagonalProblem"):
        lrt.gradient_flow(lambda w: w, torch.ones(2), torch.ones(2), t_end=1.0)
    with pytest.raises(lrt.LrtError, match="lr: expected a number > 0"):
        lrt.gradient_descent(problem, torch.ones(2), torch.ones(2), lr=-0.1, steps=1)


def test_non_finite_gradient_is_reported():
    class Blowup(lrt.DiagonalProblem):
        dim = 1

        def loss(self, w):
            return torch.log(w).sum()

    with pytest.raises(lrt.LrtError, match="non-finite gradient"):
        Blowup().grad(torch.zeros(1))


def test_autograd_descent_matches_closed_form_descent():
    head = ch01.attention_toy()
    u0, v0 = lrt.small_init(head.dim, 0.3, generator=2)
    a = lrt.gradient_descent(head, u0, v0, lr=0.02, steps=200, record_every=50)
    b = lrt.gradient_descent(head, u0, v0, lr=0.02, steps=200, record_every=50, gradient="autograd")
    assert a.t.tolist() == b.t.tolist() and b.n_grad == a.n_grad == 201
    torch.testing.assert_close(a.w, b.w, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-11, atol=0)
    with pytest.raises(lrt.LrtError, match="gradient: unknown value 'adam'"):
        lrt.gradient_descent(head, u0, v0, lr=0.02, steps=2, gradient="adam")
