import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import lrt
from lrt.experiments import ch01_conservation as ch01


def test_attention_head_shapes_and_teacher_has_zero_loss():
    data = lrt.attention_teacher_data(n_samples=5, n_tokens=3, qk=[1.0, -0.5], vo=[0.3, 2.0], generator=0)
    head = lrt.DiagonalAttentionHead(data.X, data.Y, temperature=data.temperature)
    assert head.dim == 4 and head.forward(data.w_teacher).shape == (5, 3, 2)
    assert head.loss(data.w_teacher).item() == 0.0
    assert head.loss(torch.zeros(4)).item() > 0.1


def test_attention_head_forward_matches_explicit_loop():
    data = lrt.attention_teacher_data(n_samples=3, n_tokens=4, qk=[1.0, 0.2, -0.7], vo=[0.5, 1.0, 0.0], generator=3)
    head = lrt.DiagonalAttentionHead(data.X, data.Y, temperature=1.5)
    w = torch.tensor([0.3, -1.0, 0.8, 1.1, -0.4, 0.9])
    out = head.forward(w)
    for b in range(3):
        X = data.X[b]
        logits = X @ torch.diag(w[:3]) @ X.T / 1.5
        expected = torch.softmax(logits, dim=1) @ X @ torch.diag(w[3:])
        torch.testing.assert_close(out[b], expected, rtol=1e-13, atol=1e-13)


def test_batched_losses_match_one_at_a_time():
    head = ch01.attention_toy()
    ws = torch.randn(300, head.dim, generator=torch.Generator().manual_seed(7))
    expected = torch.stack([head.loss(w) for w in ws])
    torch.testing.assert_close(head.losses(ws), expected, rtol=1e-13, atol=0.0)
    assert head.losses(torch.zeros(0, head.dim)).shape == (0,)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 3.0))
def test_closed_form_gradient_matches_autograd(seed, scale):
    head = ch01.attention_toy()
    w = scale * torch.randn(head.dim, generator=torch.Generator().manual_seed(seed))
    value, grad = head.loss_and_grad(w)
    value_np, grad_np = head.loss_and_grad_numpy(w.numpy())
    assert value_np == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(grad_np, grad.numpy(), rtol=1e-9, atol=1e-12 * (1 + grad.abs().max().item()))


def test_gradient_matches_central_finite_differences():
    head = ch01.attention_toy()
    w = torch.tensor([0.5, -0.3, 0.2, 0.1, 0.7, 0.4, -0.2, 0.05])
    _, grad = head.loss_and_grad_numpy(w.numpy())
    h = 1e-6
    fd = []
    for i in range(head.dim):
        e = torch.zeros(head.dim)
        e[i] = h
        fd.append((head.loss(w + e) - head.loss(w - e)).item() / (2 * h))
    # central differences: error O(h²·F''') ≈ 1e-10 plus round-off F·eps/h ≈ 1e-9
    np.testing.assert_allclose(grad, fd, atol=1e-7)


def test_linear_regression_gradient():
    X = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]])
    y = torch.tensor([1.0, 0.0, 2.0])
    problem = lrt.DiagonalLinearRegression(X, y)
    w = torch.tensor([0.2, -0.1])
    expected = X.T @ (X @ w - y) / 3
    torch.testing.assert_close(problem.grad(w), expected)
    np.testing.assert_allclose(problem.loss_and_grad_numpy(w.numpy())[1], expected.numpy(), rtol=1e-14)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: lrt.small_init(3, 0.0, generator=0), "alpha: expected a number > 0"),
        (lambda: lrt.small_init(3, -1e-3, generator=0), "alpha: expected a number > 0"),
        (lambda: lrt.small_init(3, float("nan"), generator=0), "alpha: expected a finite number"),
        (lambda: lrt.small_init(0, 0.1, generator=0), "dim: expected an int >= 1"),
        (lambda: lrt.small_init(3, 0.1, generator="seed"), "generator: expected a torch.Generator or an int seed"),
        (lambda: lrt.DiagonalAttentionHead(torch.zeros(2, 3), torch.zeros(2, 3)), r"X: expected shape \(\*, \*, \*\)"),
        (lambda: lrt.DiagonalAttentionHead(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5)), r"Y: expected shape \(2, 3, 4\)"),
        (lambda: lrt.DiagonalAttentionHead(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), temperature=0), "temperature"),
        (lambda: lrt.DiagonalLinearRegression(torch.eye(2), torch.tensor([1.0, float("nan")])), "y: expected finite"),
        (lambda: ch01.attention_toy().grad(torch.zeros(3)), r"w: expected shape \(8,\), got \(3,\)"),
        (lambda: lrt.attention_teacher_data(n_samples=2, n_tokens=2, qk=[1.0], vo=[1.0, 2.0], generator=0), r"vo: expected shape \(1,\)"),
    ],
)
def test_bad_input_raises_lrt_error_naming_the_argument(call, message):
    with pytest.raises(lrt.LrtError, match=message):
        call()


def test_type_errors_are_also_type_errors():
    with pytest.raises(TypeError, match="alpha: expected a real number"):
        lrt.small_init(3, "small", generator=0)


def test_same_seed_same_data_different_seed_different_data():
    kw = dict(n_samples=4, n_tokens=3, qk=[1.0], vo=[1.0])
    a, b, c = (lrt.attention_teacher_data(**kw, generator=s) for s in (7, 7, 8))
    assert torch.equal(a.X, b.X) and not torch.equal(a.X, c.X)
