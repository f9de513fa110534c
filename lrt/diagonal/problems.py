"""The model class f(x; u, v) = h(x; u ⊙ v) and its two running examples.

Every model of the class is described to the engines by a *problem*: the training loss F as a
function of the product w = u ⊙ v, with its gradient g = ∇F(w). The engines (gradient flow,
gradient descent, and later the log-variable engine and Algorithm 1) only ever call
``problem.loss_and_grad(w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lrt.core.errors import LrtError, LrtTypeError
from lrt.core import checks as _checks

__all__ = [
    "DiagonalProblem",
    "DiagonalLinearRegression",
    "DiagonalAttentionHead",
    "AttentionData",
    "attention_teacher_data",
    "small_init",
]


class DiagonalProblem:
    """Base class: a training loss F(w) of the product w = u ⊙ v, w of shape ``(dim,)``.

    Subclasses implement :meth:`loss`; the gradient comes from torch autograd in float64.

    Defined in :ref:`ch-conservation`.
    """

    dim: int

    def loss(self, w: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Return (F(w), ∇F(w)) for ``w`` of shape ``(dim,)``, float64."""
        w = self._check_w(w).requires_grad_(True)
        with torch.enable_grad():
            value = self.loss(w)
            (grad,) = torch.autograd.grad(value, w)
        if not torch.isfinite(grad).all():
            raise LrtError(f"{type(self).__name__}: non-finite gradient at w = {w.detach().tolist()}")
        return value.item(), grad.detach()

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        """∇F(w), shape ``(dim,)``."""
        return self.loss_and_grad(w)[1]

    def loss_and_grad_numpy(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """The same as :meth:`loss_and_grad` on numpy arrays, without input checks: the hot path
        of the scipy-driven engines. Subclasses may override it with a closed-form gradient
        (tested against autograd)."""
        value, grad = self.loss_and_grad(torch.from_numpy(w))
        return value, grad.numpy()

    def hessian_numpy(self, w: np.ndarray) -> np.ndarray:
        """∇²F(w), shape ``(dim, dim)``, without input checks (the Jacobian of the log-variable engine's
        ODE is built from it). This default uses torch autograd; subclasses may override it with a closed
        form (tested against autograd)."""
        H = torch.autograd.functional.hessian(self.loss, torch.from_numpy(np.asarray(w, dtype=np.float64)))
        return H.numpy()

    def face_minimum(self, face: np.ndarray, signs: np.ndarray, start: int | None = None) -> np.ndarray | None:
        """The end point of Algorithm 1's fast phase that activates ``start`` on the face {w_j = 0 off ``face``
        (bool, ``(dim,)``); s_i w_i ≥ 0 on it}, where it can be computed directly (a convex F), else None
        (the default: Algorithm 1 then follows the fast-phase flow and finishes with a bounded solve
        started from it)."""
        return None

    def losses(self, ws: torch.Tensor) -> torch.Tensor:
        """F evaluated at each row of ``ws`` (shape ``(T, dim)``), shape ``(T,)``."""
        ws = _checks.tensor("ws", ws, shape=(None, self.dim))
        with torch.no_grad():
            return torch.stack([self.loss(w) for w in ws]) if len(ws) else ws.new_zeros(0)

    def _check_w(self, w) -> torch.Tensor:
        return _checks.tensor("w", w, shape=(self.dim,)).clone()


class DiagonalLinearRegression(DiagonalProblem):
    """Diagonal linear network h(x; w) = ⟨x, w⟩ with the square loss F(w) = ‖Xw − y‖² / (2N).

    Arguments:
        X: design, shape ``(N, p)``.
        y: targets, shape ``(N,)``.

    >>> problem = DiagonalLinearRegression(torch.eye(2), torch.tensor([1.0, -2.0]))
    >>> problem.loss_and_grad(torch.zeros(2))
    (1.25, tensor([-0.5000,  1.0000]))

    Defined in :ref:`ch-conservation`.
    """

    def __init__(self, X, y):
        self.X = _checks.tensor("X", X, shape=(None, None))
        if self.X.shape[0] < 1 or self.X.shape[1] < 1:
            raise LrtError(f"X: expected at least one row (sample) and one column (feature), got shape {tuple(self.X.shape)}")
        self.y = _checks.tensor("y", y, shape=(self.X.shape[0],))
        self.dim = self.X.shape[1]
        self._Xn, self._yn = self.X.numpy(), self.y.numpy()

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        r = self.X @ w - self.y
        return 0.5 * (r @ r) / self.X.shape[0]

    def losses(self, ws: torch.Tensor) -> torch.Tensor:
        """F at each row of ``ws`` (shape ``(T, dim)``), batched over rows (one matrix product), shape ``(T,)``."""
        ws = _checks.tensor("ws", ws, shape=(None, self.dim))
        r = ws @ self.X.T - self.y
        return 0.5 * (r * r).sum(dim=1) / self.X.shape[0]

    def loss_and_grad_numpy(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        X, y = self._Xn, self._yn
        r = X @ w - y
        return 0.5 * float(r @ r) / len(y), X.T @ r / len(y)

    def face_minimum(self, face: np.ndarray, signs: np.ndarray, start: int | None = None) -> np.ndarray | None:
        """The end point of a fast phase on the face {w_j = 0 off ``face``; s_i w_i ≥ 0 on it}, or None.

        F is convex, so the fast-phase flow (mirror descent with the potential Σ|w_i|(log|w_i| − 1))
        converges to a minimiser of F on the face. When X restricted to the face's columns has full
        column rank the minimiser is unique, and bounded least squares (scipy's ``lsq_linear``, method
        ``"bvls"``, an active-set solver) finds it. Otherwise the minimisers share their fitted values
        X w, and the flow from w^k + ε s e_start picks, as ε → 0, the one with the least |w_start| (its
        Bregman distance from the start grows like |w_start| log(1/ε)); a linear program finds it, and it
        is accepted when that choice is unique (the other face columns independent). The least-squares
        solve is then repeated on the support (``lstsq``), so the gradient there is round-off.
        """
        from scipy.optimize import linprog, lsq_linear

        cols = np.flatnonzero(face)
        if cols.size == 0:
            return None
        Xf, s = self._Xn[:, cols], signs[cols]
        lower, upper = np.where(s > 0, 0.0, -np.inf), np.where(s > 0, np.inf, 0.0)
        x = lsq_linear(Xf, self._yn, bounds=(lower, upper), method="bvls", tol=1e-15).x
        x = np.where(s * x > 0, x, 0.0)
        if np.linalg.matrix_rank(Xf) < cols.size:
            where = np.flatnonzero(cols == start)
            rest = np.delete(np.arange(cols.size), where)
            if where.size == 0 or np.linalg.matrix_rank(Xf[:, rest]) < rest.size:
                return None
            cost = np.zeros(cols.size)
            cost[where[0]] = s[where[0]]
            lp = linprog(cost, A_eq=Xf, b_eq=Xf @ x, bounds=list(zip(np.where(s > 0, 0.0, None), np.where(s > 0, None, 0.0))), method="highs")
            if lp.status != 0:
                return None
            x = np.where(s * lp.x > 1e-12 * max(1.0, np.abs(lp.x).max()), lp.x, 0.0)
        on = x != 0
        if on.any() and np.linalg.matrix_rank(Xf[:, on]) == on.sum():
            refined = np.linalg.lstsq(Xf[:, on], self._yn, rcond=None)[0]
            if np.all(s[on] * refined > 0):
                x[on] = refined
        w = np.zeros(self.dim)
        w[cols] = x
        return w

    def hessian_numpy(self, w: np.ndarray) -> np.ndarray:
        """∇²F = XᵀX / N (constant)."""
        if not hasattr(self, "_H"):
            self._H = self._Xn.T @ self._Xn / len(self._yn)
        return self._H.copy()


class DiagonalAttentionHead(DiagonalProblem):
    """One attention head with diagonal weights (P1, Example 3.2), trained on (X, Y) by square loss.

    The head is ``softmax(X diag(w_Q ⊙ w_K) Xᵀ / temperature) X diag(w_V ⊙ w_O)``; its parameters
    enter only through ``w = (w_Q ⊙ w_K, w_V ⊙ w_O)``, so ``dim = 2d``. The loss is
    ``½ Σ_{tokens, features} (f(X) − Y)²`` averaged over samples.

    Arguments:
        X: inputs, shape ``(N, n, d)`` (N samples of n tokens in d dimensions).
        Y: targets, shape ``(N, n, d)``.
        temperature: the attention logits are divided by it (default 2, as in the book).

    >>> data = attention_teacher_data(n_samples=4, n_tokens=3, qk=[1.0, 0.0], vo=[1.0, 0.5], generator=0)
    >>> head = DiagonalAttentionHead(data.X, data.Y, temperature=data.temperature)
    >>> head.dim, head.loss(data.w_teacher).item()
    (4, 0.0)

    Defined in :ref:`ch-conservation`.
    """

    def __init__(self, X, Y, temperature: float = 2.0):
        self.X = _checks.tensor("X", X, shape=(None, None, None))
        if min(self.X.shape) < 1:
            raise LrtError(f"X: expected at least one sample, one token and one dimension, got shape {tuple(self.X.shape)}")
        self.Y = _checks.tensor("Y", Y, shape=tuple(self.X.shape))
        self.temperature = _checks.positive_float("temperature", temperature)
        self.d = self.X.shape[2]
        self.dim = 2 * self.d

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """The head's output for every sample, shape ``(N, n, d)``."""
        qk, vo = w[: self.d], w[self.d :]
        logits = torch.einsum("bid,d,bjd->bij", self.X, qk, self.X) / self.temperature
        return torch.softmax(logits, dim=-1) @ (self.X * vo)

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        r = self.forward(w) - self.Y
        return 0.5 * (r * r).sum() / self.X.shape[0]

    def losses(self, ws: torch.Tensor) -> torch.Tensor:
        """F at each row of ``ws`` (shape ``(T, dim)``), batched over rows (numpy, in chunks), shape ``(T,)``."""
        ws = _checks.tensor("ws", ws, shape=(None, self.dim)).numpy()
        X, Y, _ = self._numpy_cache()
        Ek, Ekf, _ = self._hessian_cache()
        N, n, d = X.shape[0], X.shape[1], self.d
        out = []
        for chunk in np.array_split(ws, max(1, -(-len(ws) // 256))) if len(ws) else []:
            T = len(chunk)
            S = (chunk[:, :d] @ Ekf.reshape(d, N, n * n).transpose(1, 0, 2)).reshape(N, T * n, n)  # sample-major
            S -= S.max(axis=-1, keepdims=True)
            A = np.exp(S)
            A /= A.sum(axis=-1, keepdims=True)
            P = (A @ X).reshape(N, T, n, d)  # one (T·n, n) @ (n, d) product per sample
            R = P * chunk[None, :, None, d:] - Y[:, None]
            out.append(0.5 * (R * R).transpose(1, 0, 2, 3).reshape(T, -1).sum(axis=1) / N)
        return torch.from_numpy(np.concatenate(out)) if out else torch.zeros(0, dtype=torch.float64)

    def loss_and_grad_numpy(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """Closed-form gradient (about 3× faster than autograd at the book's sizes).

        With A = softmax(S), S = X diag(q) Xᵀ / T, R = A X diag(o) − Y:
        ∂F/∂o_d = Σ R ⊙ (A X) / N and ∂F/∂q_d = Σ_{b,i,j} A(G − rowsum(A ⊙ G)) X_id X_jd / (T N)
        with G = R diag(o) Xᵀ (the softmax backward pass written out).
        """
        X, Y, XX = self._numpy_cache()
        N, T, d = X.shape[0], self.temperature, self.d
        q, o = w[:d], w[d:]
        S = XX @ q / T
        S -= S.max(axis=-1, keepdims=True)
        A = np.exp(S)
        A /= A.sum(axis=-1, keepdims=True)
        AX = A @ X
        R = AX * o - Y
        grad_o = np.einsum("bid,bid->d", R, AX) / N
        G = (R * o) @ X.transpose(0, 2, 1)
        dS = A * (G - (A * G).sum(axis=-1, keepdims=True))
        grad_q = np.tensordot(dS, XX, axes=([0, 1, 2], [0, 1, 2])) / (T * N)
        return 0.5 * float((R * R).sum()) / N, np.concatenate([grad_q, grad_o])

    def hessian_numpy(self, w: np.ndarray) -> np.ndarray:
        """Closed-form Hessian (about 1.5 gradients' cost; tested against autograd).

        With E^k = X_{:,k} X_{:,k}ᵀ / T (the logits' derivative in q_k), c^k = rowsum(A ⊙ E^k),
        D^k = A ⊙ (E^k − c^k) = ∂A/∂q_k, Q^k = D^k X = ∂(AX)/∂q_k, P = AX, R = P diag(o) − Y and
        G = R diag(o) Xᵀ (sums over samples, divided by N):

        * ∂²F/∂o_m∂o_m' = δ_mm' Σ P_{:,m}²;  ∂²F/∂q_k∂o_m = Σ Q^k_{:,m} (o_m P_{:,m} + R_{:,m});
        * ∂²F/∂q_k∂q_k' = Σ_m o_m² ⟨Q^k_{:,m}, Q^k'_{:,m}⟩ + ⟨D^k', G ⊙ (E^k − c^k) − rowsum(G ⊙ A) E^k⟩.
        """
        X, Y, XX = self._numpy_cache()
        N, n, d = X.shape[0], X.shape[1], self.d
        Ek, Ekf, Xt = self._hessian_cache()
        q, o = w[:d], w[d:]
        S = (q @ Ekf).reshape(N, n, n)
        S -= S.max(axis=-1, keepdims=True)
        A = np.exp(S)
        A /= A.sum(axis=-1, keepdims=True)
        P = A @ X
        R = P * o - Y
        Ec = Ek - (Ek * A).sum(axis=-1, keepdims=True)  # E^k − c^k, (d, N, n, n)
        D = A * Ec
        Q = D @ X  # (d, N, n, d)
        Qo = (Q * o).reshape(d, -1)
        Gm = (R * o) @ Xt
        M = Gm * Ec - (Gm * A).sum(axis=-1, keepdims=True) * Ek
        H = np.empty((2 * d, 2 * d))
        H[:d, :d] = (Qo @ Qo.T + D.reshape(d, -1) @ M.reshape(d, -1).T) / N
        H[:d, d:] = (Q * (o * P + R)).reshape(d, -1, d).sum(axis=1) / N
        H[d:, :d] = H[:d, d:].T
        H[d:, d:] = np.diag((P * P).reshape(-1, d).sum(axis=0) / N)
        return H

    def _hessian_cache(self):
        """E^k = X_{:,k} X_{:,k}ᵀ / T as ``(d, N, n, n)`` and flattened ``(d, N·n·n)``, and Xᵀ per sample."""
        if not hasattr(self, "_np_hess"):
            X, _, XX = self._numpy_cache()
            Ek = np.ascontiguousarray(np.moveaxis(XX, -1, 0)) / self.temperature
            self._np_hess = (Ek, Ek.reshape(self.d, -1), np.ascontiguousarray(X.transpose(0, 2, 1)))
        return self._np_hess

    def _numpy_cache(self):
        if not hasattr(self, "_np"):
            X = self.X.numpy()
            self._np = (X, self.Y.numpy(), np.einsum("bid,bjd->bijd", X, X))
        return self._np

    def split(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w_Q ⊙ w_K, w_V ⊙ w_O): the diagonals of ΔW_K W_Qᵀ and ΔW_V W_Oᵀ."""
        return w[..., : self.d], w[..., self.d :]


@dataclass(frozen=True)
class AttentionData:
    """Inputs X ``(N, n, d)``, teacher outputs Y ``(N, n, d)``, the teacher's w ``(2d,)``."""

    X: torch.Tensor
    Y: torch.Tensor
    w_teacher: torch.Tensor
    temperature: float


def attention_teacher_data(
    *, n_samples: int, n_tokens: int, qk, vo, temperature: float = 2.0, generator
) -> AttentionData:
    """Samples X with i.i.d. N(0, 1) tokens and labels Y from a diagonal teacher head.

    Arguments:
        n_samples, n_tokens: N and n.
        qk, vo: the teacher's w_Q ⊙ w_K and w_V ⊙ w_O, each of shape ``(d,)``.
        temperature: softmax temperature of teacher and student.
        generator: a ``torch.Generator`` or an int seed (explicit randomness; nothing global).

    >>> data = attention_teacher_data(n_samples=2, n_tokens=3, qk=[2.0, 0.0], vo=[1.0, 1.0], generator=0)
    >>> tuple(data.X.shape), tuple(data.Y.shape)
    ((2, 3, 2), (2, 3, 2))

    Defined in :ref:`ch-conservation`.
    """
    n_samples = _checks.positive_int("n_samples", n_samples)
    n_tokens = _checks.positive_int("n_tokens", n_tokens)
    qk = _checks.tensor("qk", qk, shape=(None,))
    vo = _checks.tensor("vo", vo, shape=(qk.shape[0],))
    temperature = _checks.positive_float("temperature", temperature)
    gen = _checks.generator("generator", generator)
    X = torch.randn(n_samples, n_tokens, qk.shape[0], generator=gen, dtype=torch.float64)
    w_teacher = torch.cat([qk, vo])
    teacher = DiagonalAttentionHead(X, torch.zeros_like(X), temperature)
    with torch.no_grad():
        Y = teacher.forward(w_teacher)
    return AttentionData(X=X, Y=Y, w_teacher=w_teacher, temperature=temperature)


def small_init(dim: int, alpha: float, *, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """u(0) = α ū, v(0) = α v̄ with ū, v̄ i.i.d. N(0, 1), each of shape ``(dim,)``.

    >>> u0, v0 = small_init(3, 0.01, generator=0)
    >>> tuple(u0.shape), bool((u0.abs() < 0.1).all())
    ((3,), True)

    Defined in :ref:`ch-conservation`.
    """
    dim = _checks.positive_int("dim", dim)
    alpha = _checks.positive_float("alpha", alpha)
    gen = _checks.generator("generator", generator)
    ubar = torch.randn(dim, generator=gen, dtype=torch.float64)
    vbar = torch.randn(dim, generator=gen, dtype=torch.float64)
    return alpha * ubar, alpha * vbar


def check_problem(name: str, value) -> DiagonalProblem:
    """Return `value` if it is a DiagonalProblem (the engines' one interface), else raise naming `name`."""
    if not isinstance(value, DiagonalProblem):
        raise LrtTypeError(f"{name}: expected a DiagonalProblem, got {type(value).__name__}")
    return value
