"""Part II (Li et al.): the pattern data, the one-layer transformer, its gradients, the measurements."""

import math
import re

import numpy as np
import pytest
import torch

import lrt
from lrt import p2
from tests.reproduction import assert_reproduces

TINY = p2.P2Config(d=6, M=6, L=8, alpha_relevant=0.375, alpha_confusion=0.25, m=5, n_train=16, n_test=8)


def tiny_data(config=TINY, n=3, seed=0, tau=None):
    if tau is not None:
        config = p2.P2Config(**{**config.__dict__, "tau": tau})
    U = p2.make_patterns(config.d, config.M, generator=seed)
    return p2.sample_pattern_data(config, n, U, generator=seed + 1)


def random_net(d, m, n_outputs=1, seed=0):
    """A network with generic (non-identity) weights, so that every term of the forward pass matters."""
    net = p2.OneLayerTransformer(d, m, n_outputs=n_outputs, xi=1.0, generator=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name in ("W_Q", "W_K", "W_V"):
            getattr(net, name).add_(0.5 * torch.randn(d, d, generator=g, dtype=torch.float64))
    return net


def loop_forward(net, X):
    """F(X) with explicit loops over samples, queries l and keys s (spec §2), in numpy."""
    W = {k: v.detach().numpy() for k, v in net.weights().items()}
    a = net.a.numpy()
    out = []
    for x in X.numpy():
        L = x.shape[0]
        total = 0.0
        for l in range(L):
            scores = np.array([(W["W_K"] @ x[s]) @ (W["W_Q"] @ x[l]) for s in range(L)])
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            mixed = sum(weights[s] * (W["W_V"] @ x[s]) for s in range(L))
            hidden = np.maximum(W["W_O"] @ mixed, 0.0)
            total = total + a @ hidden
        out.append(total / L)
    return np.array(out)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_forward_matches_an_explicit_loop_over_tokens(n_outputs):
    data = tiny_data()
    net = random_net(TINY.d, TINY.m, n_outputs)
    fast = net(data.X).detach().numpy()
    assert fast.shape == ((3,) if n_outputs == 1 else (3, n_outputs))
    np.testing.assert_allclose(fast, loop_forward(net, data.X), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_autograd_gradient_matches_finite_differences(n_outputs):
    data = tiny_data()
    net = random_net(TINY.d, TINY.m, n_outputs, seed=1)
    y = data.y % n_outputs if n_outputs > 1 else data.y
    loss = p2.hinge_loss(net(data.X), y)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    h = 1e-6
    for (name, param), grad in zip(net.named_parameters(), grads):
        fd = torch.zeros_like(param)
        with torch.no_grad():
            for idx in np.ndindex(*param.shape):
                old = param[idx].item()
                param[idx] = old + h
                up = p2.hinge_loss(net(data.X), y).item()
                param[idx] = old - h
                down = p2.hinge_loss(net(data.X), y).item()
                param[idx] = old
                fd[idx] = (up - down) / (2 * h)
        assert torch.allclose(grad, fd, rtol=1e-6, atol=1e-8), name


def numpy_backprop(net, X, signs):
    """Gradient of the batch-mean binary hinge loss by hand-written backpropagation in numpy (the way
    the spec's pilot computed it), independent of torch autograd."""
    W = {k: v.detach().numpy() for k, v in net.weights().items()}
    a, X, y = net.a.numpy(), X.numpy(), signs.numpy()
    Q, K, V = X @ W["W_Q"].T, X @ W["W_K"].T, X @ W["W_V"].T
    S = Q @ K.transpose(0, 2, 1)  # S[n, l, s] = (W_K x_s)ᵀ W_Q x_l
    A = np.exp(S - S.max(-1, keepdims=True))
    A /= A.sum(-1, keepdims=True)  # softmax over the keys s
    H = A @ V
    Z = H @ W["W_O"].T
    F = (np.maximum(Z, 0) @ a).mean(1)
    n, L = X.shape[:2]
    dF = -y * (1 - y * F > 0) / n
    dZ = (dF[:, None, None] / L) * a * (Z > 0)
    dH = dZ @ W["W_O"]
    dA, dV = dH @ V.transpose(0, 2, 1), A.transpose(0, 2, 1) @ dH
    dS = A * (dA - (dA * A).sum(-1, keepdims=True))
    return {
        "W_Q": np.einsum("nls,nsd,nle->de", dS, K, X), "W_K": np.einsum("nls,nld,nse->de", dS, Q, X),
        "W_V": np.einsum("nld,nle->de", dV, X), "W_O": np.einsum("nlm,nld->md", dZ, H),
    }


def test_autograd_matches_hand_written_backprop_on_the_default_model():
    """The default network (spec §2) at its identity initialisation and after 120 SGD steps (generic weights)."""
    cfg = p2.P2Config(n_train=256, n_test=16, steps=120, log_every=120)
    net, data, _, _ = p2.setup_p2(cfg, seed=0)
    trained = p2.run_p2(cfg, seed=0).model
    sub = p2.PatternData(data.X[:64], data.y[:64], data.token_pattern[:64], data.patterns, cfg)
    for model in (net, trained):
        auto, manual = p2.gradients(model, sub), numpy_backprop(model, sub.X, sub.signs)
        for name in p2.WEIGHTS:
            scale = np.abs(manual[name]).max()
            assert scale > 0 and np.abs(auto[name].numpy() - manual[name]).max() <= 1e-10 * scale, name


def test_hinge_and_error_against_explicit_formulas():
    out = torch.tensor([[0.5, -2.0, 0.1], [-1.0, 0.3, 2.0]])
    y = torch.tensor([0, 2])
    expected = (0.5 + 0 + 1.1 + 0 + 1.3 + 0) / 2  # one-vs-rest: +1 for the class, -1 for the others
    assert p2.hinge_loss(out, y).item() == pytest.approx(expected)
    assert p2.zero_one_error(out, y) == 0.0 and p2.zero_one_error(out, torch.tensor([1, 2])) == 0.5
    assert p2.hinge_loss(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])).item() == pytest.approx((0.5 + 1.5) / 2)
    nan = float("nan")
    assert p2.zero_one_error(torch.tensor([nan, 2.0]), torch.tensor([0, 0])) == 0.5  # a diverged output is wrong
    assert p2.zero_one_error(torch.tensor([[nan, 0.0], [2.0, 0.0]]), torch.tensor([0, 0])) == 0.5


@pytest.mark.parametrize("config", [
    p2.P2Config(),
    p2.P2Config(n_classes=4, multi_output=True),
    p2.P2Config(patterns_per_class=2, alpha_relevant=0.2),
])
def test_label_is_the_majority_vote_and_tokens_are_noisy_patterns(config):
    U = p2.make_patterns(config.d, config.M, generator=0)
    data = p2.sample_pattern_data(config, 200, U, generator=1)
    K, C = config.patterns_per_class, config.n_classes
    tokens = data.token_pattern.numpy()
    for n in range(200):
        counts = [sum(int(t) // K == c for t in tokens[n] if t < C * K) for c in range(C)]
        assert int(np.argmax(counts)) == data.y[n].item() and sorted(counts)[-1] > sorted(counts)[-2]
        assert counts[data.y[n].item()] == config.n_relevant and sum(counts) == config.n_relevant + config.n_confusion
    if C == 2 and K == 1:  # binary: y = +1 exactly when μ1 tokens outnumber μ2 tokens
        more_mu1 = torch.tensor([(t == 0).sum() > (t == 1).sum() for t in data.token_pattern])
        assert torch.equal(data.signs > 0, more_mu1)
    assert set(data.y.tolist()) == set(range(C))
    noise = data.X - U[data.token_pattern]
    assert noise.std().item() == pytest.approx(config.tau / math.sqrt(config.d), rel=0.05)
    assert torch.allclose(U @ U.T, torch.eye(config.M), atol=1e-12)


def test_attention_at_identity_initialisation_is_the_closed_form():
    data = tiny_data(p2.P2Config(), n=20, tau=0.0)
    net = p2.OneLayerTransformer(20, 8, generator=0)
    assert p2.relevant_attention(net, data) == pytest.approx(3 * math.e / (3 * math.e + 17), abs=1e-12)


def test_attention_by_kind_against_an_explicit_loop():
    data = tiny_data(n=4)
    net = random_net(TINY.d, TINY.m, seed=3)
    _, attn = net(data.X, return_attention=True)
    totals, count = {"relevant": 0.0, "confusion": 0.0, "irrelevant": 0.0}, 0
    for n in range(4):
        y, tok = data.y[n].item(), data.token_pattern[n].tolist()
        for l in range(TINY.L):
            if tok[l] != y:
                continue
            count += 1
            for s in range(TINY.L):
                kind = "relevant" if tok[s] == y else "confusion" if tok[s] < 2 else "irrelevant"
                totals[kind] += attn[n, l, s].item()
    got = p2.attention_by_kind(net, data)
    for kind, total in totals.items():
        assert got[kind] == pytest.approx(total / count, abs=1e-12), kind
    assert got["relevant"] == pytest.approx(p2.relevant_attention(net, data), abs=1e-12)


def test_pruning_indices_against_explicit_sorting():
    rng = np.random.default_rng(0)
    norms = torch.tensor(rng.random(50))
    order = sorted(range(50), key=lambda i: norms[i].item())
    for R in (0.0, 0.1, 0.33, 1.0):
        k = int(math.floor(R * 50 + 0.5))
        assert p2.prune_indices(norms, R).tolist() == sorted(order[:k])
        assert p2.prune_indices(norms, R, "largest").tolist() == sorted(order[50 - k:])
        rand = p2.prune_indices(norms, R, "random", generator=3)
        assert len(set(rand.tolist())) == k and torch.equal(rand, p2.prune_indices(norms, R, "random", generator=3))
    net = p2.OneLayerTransformer(4, 10, generator=0)
    cut = p2.pruned(net, torch.tensor([1, 7]))
    assert p2.row_norms(cut.W_O.detach()).eq(0).tolist() == [i in (1, 7) for i in range(10)]
    assert p2.row_norms(net.W_O.detach()).gt(0).all()  # the original is untouched


def test_update_measurements_on_known_matrices():
    U = p2.make_patterns(5, 5, generator=0)
    delta = 3.0 * torch.outer(torch.ones(5), U[0]) + 1.0 * torch.outer(torch.arange(5.0), U[1])
    s = p2.update_spectrum(delta)
    assert s["rank"] == 2 and s["energy"] == pytest.approx(1.0) and s["tail"] < 1e-12
    proj = p2.pattern_projections(delta, U)
    assert proj[0].item() == pytest.approx(3 * math.sqrt(5)) and proj[2:].abs().max().item() < 1e-12
    assert p2.off_span_fraction(delta, U[:2]) < 1e-12 and p2.off_span_fraction(delta, U[2:]) == pytest.approx(1.0)
    assert p2.lucky_fraction(torch.tensor([1.0, 0.51, 0.5, 0.1])) == 0.5


def test_lora_starts_at_the_base_and_keeps_rank_r():
    data = tiny_data(n=16)
    base = random_net(TINY.d, TINY.m, seed=2)
    lora = p2.LoRATransformer(base, rank=1, generator=0)
    assert torch.equal(lora(data.X), base(data.X))
    p2.train(lora, data, data, steps=5, batch=8, lr=1.0, log_every=5, generator=0)
    for name, W in lora.weights().items():
        sigma = torch.linalg.svdvals(W - getattr(lora, name + "0"))
        assert sigma[0] > 1e-6 and (sigma[1:] <= 1e-9 * max(1.0, W.abs().max().item())).all(), name
    assert sum(p.numel() for p in lora.parameters()) == 3 * (6 + 6) + (5 + 6)
    scaled = p2.LoRATransformer(base, rank=2, alpha=3.0, generator=0)  # ΔW = (α/r) B A
    with torch.no_grad():
        scaled.B_V.copy_(torch.ones(6, 2))
    assert torch.allclose(scaled.weights()["W_V"] - scaled.W_V0, 1.5 * torch.ones(6, 2) @ scaled.A_V)


def test_training_is_deterministic_and_learns():
    cfg = p2.P2Config(d=8, M=8, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=32, n_train=200, n_test=100, steps=100, log_every=50)
    a, b = p2.run_p2(cfg, seed=5), p2.run_p2(cfg, seed=5)
    assert torch.equal(a.model.W_O, b.model.W_O) and torch.equal(a.log.test_hinge, b.log.test_hinge)
    assert a.log.test_hinge[-1] < 0.5 * a.log.test_hinge[0]


@pytest.mark.parametrize("call, message", [
    (lambda: p2.prune_indices(torch.ones(4), 1.5), r"R: expected a number in \[0, 1\], got 1.5"),
    (lambda: p2.prune_indices(torch.ones(4), -0.1), r"R: expected a number >= 0, got -0.1"),
    (lambda: p2.prune_indices(torch.ones(4), 0.5, "biggest"), "order: unknown value 'biggest'; expected one of smallest, largest, random"),
    (lambda: p2.prune_indices(torch.ones(4), 0.5, "random"), "generator: random pruning needs"),
    (lambda: p2.P2Config(n_classes=1), "n_classes: expected an int >= 2"),
    (lambda: p2.P2Config(L=3), "L: expected enough tokens .* got L = 3: 0 relevant and 0 confusion"),
    (lambda: p2.P2Config(L=5), "L: expected enough tokens .* got L = 5: 1 relevant and 1 confusion"),
    (lambda: p2.P2Config(alpha_relevant=0.7, alpha_confusion=0.4), "L: expected enough tokens"),
    (lambda: p2.P2Config(M=2), "M: expected more than C·K = 2 patterns"),
    (lambda: p2.P2Config(M=30), "M: expected at most d = 20"),
    (lambda: p2.P2Config(tau=-1.0), "tau: expected a number >= 0"),
    (lambda: p2.LoRATransformer(p2.OneLayerTransformer(4, 6, generator=0), rank=0, generator=0), "rank: expected an int >= 1"),
    (lambda: p2.LoRATransformer(p2.OneLayerTransformer(4, 6, generator=0), rank=1, alpha=0.0, generator=0), "alpha: expected a number > 0"),
    (lambda: p2.LoRATransformer(p2.OneLayerTransformer(4, 6, generator=0), rank=1, adapt=["W_X"], generator=0), "adapt: unknown value 'W_X'"),
])
def test_bad_input_raises_lrt_error_naming_the_argument(call, message):
    with pytest.raises(lrt.LrtError, match=message):
        call()


def numpy_sgd(net, data, indices, lr):
    """Plain SGD on the batch-mean binary hinge loss in numpy, with :func:`numpy_backprop`'s gradients,
    fed the given minibatch indices: a second trainer, independent of torch autograd and ``lrt.p2.train``."""
    W = {k: v.detach().numpy().copy() for k, v in net.weights().items()}
    shadow = p2.OneLayerTransformer(net.W_Q.shape[0], net.W_O.shape[0], generator=0)
    with torch.no_grad():
        shadow.a.copy_(net.a)
    for idx in indices:
        with torch.no_grad():
            for name in p2.WEIGHTS:
                getattr(shadow, name).copy_(torch.from_numpy(W[name]))
        grads = numpy_backprop(shadow, data.X[idx], data.signs[idx])
        for name in p2.WEIGHTS:
            W[name] -= lr * grads[name]
    return W


def test_a_numpy_trainer_retraces_lrt_train_on_the_default_model():
    """Same data, initialisation and minibatches (seed 0 of the default setting, 150 steps: through the
    drop of the loss); the numpy trainer's weights match ``lrt.p2.run_p2``'s to round-off."""
    cfg = p2.P2Config(steps=150, log_every=150)
    net, data, _, batch_seed = p2.setup_p2(cfg, seed=0)
    gen = torch.Generator().manual_seed(batch_seed)
    indices = [torch.randint(0, len(data), (cfg.batch,), generator=gen) for _ in range(cfg.steps)]
    mine = numpy_sgd(net, data, indices, cfg.lr)
    run = p2.run_p2(cfg, seed=0)
    for name in p2.WEIGHTS:
        theirs = getattr(run.model, name).detach().numpy()
        assert np.abs(theirs - run.init[name].numpy()).max() > 1e-2, name  # the weights moved
        assert np.abs(mine[name] - theirs).max() <= 1e-9 * max(1.0, np.abs(theirs).max()), name


# --- bad input: a correct answer, or an LrtError naming the argument -----------------------------------

NET = p2.OneLayerTransformer(4, 6, generator=0)
SMALL = p2.P2Config(d=4, M=4, L=10, alpha_relevant=0.3, alpha_confusion=0.2, m=6)


def small_data(config=SMALL, n=16, seed=1):
    return p2.sample_pattern_data(config, n, p2.make_patterns(config.d, config.M, generator=0), generator=seed)


def test_off_span_fraction_of_a_repeated_basis_row_is_the_fraction_for_its_span():
    # the span of {e1, e1} is span{e1}: the identity keeps e2, e3 outside it, ‖(0, 1, 1)‖ / ‖I‖ = √(2/3)
    got = p2.off_span_fraction(torch.eye(3), torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]))
    assert got == pytest.approx(math.sqrt(2 / 3), abs=1e-12)
    dependent = torch.tensor([[1.0, 1.0, 0], [2.0, 2.0, 0], [1.0, -1.0, 0]])  # spans {e1, e2}
    assert p2.off_span_fraction(torch.eye(3), dependent) == pytest.approx(math.sqrt(1 / 3), abs=1e-12)


def test_off_span_fraction_of_a_zero_basis_is_one():
    assert p2.off_span_fraction(torch.eye(3), torch.zeros(1, 3)) == 1.0
    assert p2.off_span_fraction(torch.zeros(2, 3), torch.eye(3)) == 0.0  # a zero update has no part off the span


@pytest.mark.parametrize("loss", [p2.hinge_loss, p2.zero_one_error])
def test_losses_reject_labels_outside_the_task(loss):
    with pytest.raises(lrt.LrtError, match=r"y: expected classes in \{0, …, 1\} .* got values in \[2, 5\]"):
        loss(torch.tensor([0.5, 0.5]), torch.tensor([2, 5]))
    with pytest.raises(lrt.LrtError, match=r"y: expected classes in \{0, …, 2\}"):
        loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(lrt.LrtTypeError, match="y: expected an integer tensor"):
        loss(torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0]))
    with pytest.raises(lrt.LrtError, match=r"y: expected shape \(2,\)"):
        loss(torch.tensor([0.5, 0.5]), torch.tensor([0, 1, 1]))


def test_a_binary_network_does_not_train_on_three_class_data():
    three = small_data(p2.P2Config(**{**SMALL.__dict__, "n_classes": 3}))
    with pytest.raises(lrt.LrtError, match=r"model: a network with 1 output\(s\) cannot fit data with 3 classes"):
        p2.train(p2.OneLayerTransformer(4, 6, generator=0), three, three, steps=2, batch=4, lr=1.0, generator=0)
    with pytest.raises(lrt.LrtError, match=r"model: a network with 1 output\(s\) cannot fit data with 3 classes"):
        p2.evaluate(NET, three)


def test_training_stops_at_the_first_non_finite_loss_with_step_and_value():
    data = small_data()
    net = p2.OneLayerTransformer(4, 6, generator=0)
    with pytest.raises(lrt.LrtError, match=r"lr: training diverged: the minibatch loss is (inf|nan) at step (\d+) of 200") as info:
        p2.train(net, data, data, steps=200, batch=8, lr=1e6, generator=0)
    step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    assert step > 1  # the first steps are finite: the run stops where the loss first overflows, not before
    p2.train(p2.OneLayerTransformer(4, 6, generator=0), data, data, steps=step - 1, batch=8, lr=1e6, generator=0)


def test_training_rejects_non_finite_tokens():
    data = small_data()
    X = data.X.clone()
    X[3, 0, 0] = float("nan")
    bad = p2.PatternData(X, data.y, data.token_pattern, data.patterns, data.config)
    with pytest.raises(lrt.LrtError, match="train_data: expected finite tokens X, got NaN or inf in 1 of 16 samples"):
        p2.train(p2.OneLayerTransformer(4, 6, generator=0), bad, data, steps=2, batch=4, lr=1.0, generator=0)
    with pytest.raises(lrt.LrtError, match="test_data: expected finite tokens X"):
        p2.train(p2.OneLayerTransformer(4, 6, generator=0), data, bad, steps=2, batch=4, lr=1.0, generator=0)


def test_lora_rank_above_the_matrix_size_is_rejected():
    with pytest.raises(lrt.LrtError, match=r"rank: expected at most 4 \(the smaller side of the adapted matrices"):
        p2.LoRATransformer(NET, rank=100, generator=0)
    assert p2.LoRATransformer(NET, rank=4, generator=0).rank == 4


@pytest.mark.parametrize("idx, error, message", [
    (torch.tensor([-1]), lrt.LrtError, r"idx: expected neuron indices in \[0, 6\), got values in \[-1, -1\]"),
    (torch.tensor([99]), lrt.LrtError, r"idx: expected neuron indices in \[0, 6\), got values in \[99, 99\]"),
    (torch.tensor([1.0]), lrt.LrtTypeError, r"idx: expected integer neuron indices in \[0, 6\), got torch.float\d+"),
    (torch.tensor([[1]]), lrt.LrtError, r"idx: expected a 1-D tensor of neuron indices"),
])
def test_pruned_rejects_indices_that_are_not_neurons(idx, error, message):
    with pytest.raises(error, match=message):
        p2.pruned(NET, idx)


def test_pruned_accepts_a_list_of_indices():
    assert p2.row_norms(p2.pruned(NET, [0, 5]).W_O.detach()).eq(0).tolist() == [True, False, False, False, False, True]


def test_multi_output_must_be_a_bool():
    with pytest.raises(lrt.LrtTypeError, match="multi_output: expected True or False, got str 'yes'"):
        p2.P2Config(multi_output="yes")


def test_sample_pattern_data_rejects_patterns_that_are_not_orthonormal():
    with pytest.raises(lrt.LrtError, match=r"patterns: expected orthonormal rows .* got max \|U Uᵀ − I\| = 4"):
        p2.sample_pattern_data(SMALL, 3, torch.ones(4, 4), generator=0)
    with pytest.raises(lrt.LrtError, match="patterns: expected orthonormal rows"):
        p2.sample_pattern_data(SMALL, 3, 2.0 * torch.eye(4), generator=0)


@pytest.mark.parametrize("X, message", [
    (torch.zeros(2, 3, 5), r"X: expected shape \(N, L, d = 4\) .* got \(2, 3, 5\)"),
    (torch.zeros(3, 4), r"X: expected shape \(N, L, d = 4\) .* got \(3, 4\)"),
])
def test_forward_rejects_tokens_of_the_wrong_shape(X, message):
    with pytest.raises(lrt.LrtError, match=message):
        NET(X)


def test_forward_on_float32_tokens_is_the_float64_answer():
    X = small_data(n=4).X
    assert torch.equal(NET(X.to(torch.float32)), NET(X.to(torch.float32).to(torch.float64)))
    assert NET(X.to(torch.float32)).dtype == torch.float64


@pytest.mark.parametrize("call", [
    lambda lora: p2.pruned(lora, torch.tensor([1])),
    lambda lora: p2.pruning_curve(lora, small_data(), [0.1], order="smallest"),
])
def test_pruning_a_lora_model_is_rejected_naming_the_model(call):
    with pytest.raises(lrt.LrtTypeError, match=r"model: expected a OneLayerTransformer \(pruning zeroes rows of its trained W_O\), got LoRATransformer"):
        call(p2.LoRATransformer(NET, rank=1, generator=0))


def test_lora_with_nothing_to_adapt_is_rejected():
    with pytest.raises(lrt.LrtError, match=r"adapt: expected at least one of W_Q, W_K, W_V, W_O \(nothing to train\)"):
        p2.LoRATransformer(NET, rank=1, adapt=[], generator=0)


def test_lucky_fraction_of_no_neurons_is_rejected():
    with pytest.raises(lrt.LrtError, match="norms: expected the row norms of at least one neuron"):
        p2.lucky_fraction(torch.tensor([]))
    with pytest.raises(lrt.LrtError, match="norms: expected row norms >= 0"):
        p2.lucky_fraction(torch.tensor([1.0, -0.5]))


def test_a_single_adapted_name_is_one_name():
    lora = p2.LoRATransformer(NET, rank=1, adapt="W_Q", generator=0)
    assert lora.adapt == ("W_Q",) and sorted(n for n, _ in lora.named_parameters()) == ["A_Q", "B_Q"]


# --- the committed results files are what a short run reproduces ---------------------------------------


def test_short_run_reproduces_the_seeds_file():
    from lrt.experiments import ch07_p2_model as ch07

    short = ch07.seeds_record(steps=50, seeds=(0,))
    saved = torch.load(ch07.SEEDS_FILE, weights_only=True)
    assert saved["seeds"].tolist() == list(range(10)) and saved["W_O"].shape == (10, 200, 20)
    keys = ("log_steps", "log_train_hinge", "log_test_hinge", "log_test_error", "log_attention")
    assert_reproduces({k: short[k][0] for k in keys}, {k: saved[k][0, :2] for k in keys})  # tolerance: tests/reproduction.py


def test_short_run_reproduces_the_rank_sweep_file():
    from lrt.experiments import ch08_low_rank_updates as ch08

    short = ch08.sweep_record(steps=50, seeds=(0,), cases=[("C3", ch08.class_config(3))])
    saved = torch.load(ch08.SWEEP_FILE, weights_only=True)
    assert {f"{case}/seed2/sigma_W_V" for case, _ in ch08.sweep_cases()} <= set(saved)
    keys = [f"C3/seed0/{key}" for key in ("steps", "test_hinge", "test_error", "attention")]
    assert_reproduces(short, {k: saved[k][:2] for k in keys}, keys)  # tolerance: tests/reproduction.py


def test_short_runs_reproduce_the_lora_files_and_the_step_size_is_the_tuned_one():
    from lrt.experiments import ch08_low_rank_updates as ch08
    from lrt.experiments import ch10_lora as ch10

    short = ch10.lora_record(steps=50, seeds=(0,), tasks={"C4": (ch08.class_config(4), (2,))})
    saved = torch.load(ch10.LORA_FILE, weights_only=True)
    keys = [f"C4/r2/seed0/{key}" for key in ("steps", "train_hinge", "test_hinge", "attention")]
    assert_reproduces(short, {k: saved[k][:2] for k in keys}, keys)  # tolerance: tests/reproduction.py
    tune = ch10.tune_record(steps=50, grid=(0.03,), cases=(("binary", 1),))
    saved = torch.load(ch10.TUNE_FILE, weights_only=True)
    keys = [f"lr0.03/binary/r1/{key}" for key in ("steps", "train_hinge", "test_hinge")]
    assert_reproduces(tune, {k: saved[k][:2] for k in keys}, keys)
    assert ch10.tuned_lr() == ch10.LORA_LR  # the sweep uses the step size that the committed grid selects


def test_the_part_ii_figures_are_listed_and_cheap_ones_render(tmp_path, capsys):
    from lrt.cli import main

    assert main(["figure", "--list"]) == 0
    listed = capsys.readouterr().out
    names = ["p2-training", "p2-attention", "p2-update-spectra", "p2-pattern-projections", "p2-rank-vs-classes",
             "p2-row-norms", "p2-pruning", "p2-lora"]
    assert all(name in listed for name in names)
    for name in ("p2-attention", "p2-rank-vs-classes", "p2-lora"):
        target = tmp_path / f"{name}.png"
        assert main(["figure", name, "--out", str(target)]) == 0 and target.read_bytes()[:4] == b"\x89PNG"


def test_short_run_reproduces_the_attention_rate_file():
    """Seed 0 under both seedings, 50 steps: the first two log entries of the committed 500-step runs (to round-off,
    which differs between CPUs), and the part seeds are the ones the file was made with."""
    from lrt.experiments import ch07_p2_model as ch07

    short = ch07.rate_record(steps=50, seeds=(0,))
    saved = torch.load(ch07.RATE_FILE, weights_only=True)
    assert saved["seeds"].tolist() == list(range(60)) and saved["derived/attention"].shape == (60, 11)
    for seeding in ch07.SEEDINGS:
        for key in ("steps", "test_hinge", "test_error", "attention"):
            assert torch.allclose(short[f"{seeding}/{key}"][0], saved[f"{seeding}/{key}"][0, :2], rtol=0, atol=1e-9), (seeding, key)
    assert ch07.part_seeds("derived", 0) == p2.seeds_for(0, 5) and len(set(ch07.part_seeds("independent", 0))) == 5


@pytest.mark.parametrize("part_seeds", [(1, 2, 3), (1, 2, 3, 4, -5), (1, 2, 3, 4, 5.0), "12345"])
def test_part_seeds_must_be_five_non_negative_ints(part_seeds):
    with pytest.raises(lrt.LrtError, match="part_seeds: expected five ints >= 0"):
        p2.setup_p2(p2.P2Config(n_train=8, n_test=4), part_seeds=part_seeds)


def test_part_seeds_replace_the_derived_seeds():
    cfg = p2.P2Config(n_train=8, n_test=4)
    a = p2.setup_p2(cfg, seed=3)
    b = p2.setup_p2(cfg, seed=99, part_seeds=p2.seeds_for(3, 5))
    assert torch.equal(a[1].X, b[1].X) and torch.equal(a[0].W_O, b[0].W_O) and a[3] == b[3]


def test_a_model_without_trainable_parameters_is_refused_by_train_and_gradients():
    cfg = p2.P2Config(n_train=16, n_test=8)
    net, train_data, test_data, _ = p2.setup_p2(cfg, seed=0)
    for p in net.parameters():
        p.requires_grad_(False)
    with pytest.raises(lrt.LrtError, match="model: expected trainable parameters"):
        p2.train(net, train_data, test_data, steps=1, batch=4, lr=0.1, generator=torch.Generator().manual_seed(0))
    with pytest.raises(lrt.LrtError, match="model: expected trainable parameters"):
        p2.gradients(net, train_data)
