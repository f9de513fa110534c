"""Chapter 6: the transformer's per-head conventions, the tracker, the data, and the committed runs."""

import json
import math

import pytest
import torch
from torch import nn

import lrt
from lrt import LrtError, LrtTypeError
from lrt.cli import main
from lrt.transformers.datasets import digits_split, text_batch, text_split, text_windows, unigram_cross_entropy
from lrt.experiments import ch06_beyond_diagonal as ch06
from lrt import DigitsTask, TextTask, Tracker, load_results, perturbation_spectra, save_results, stable_rank, train
from lrt.transformers.models import CharGPT, SelfAttention, ViT, attention_products, from_torch_attention
from tests.reproduction import assert_reproduces


def random_attention(d_model=8, n_heads=2, *, causal=False, tie_qk=False, seed=0):
    attn = SelfAttention(d_model, n_heads, causal=causal, tie_qk=tie_qk)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in attn.parameters():
            w.copy_(torch.randn(w.shape, generator=gen))
    return attn


def explicit_attention(attn: SelfAttention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """Loops over samples, heads and token pairs, written with the two d_model × d_model products:
    logit(i, j) = x_j (W_K W_Qᵀ) x_iᵀ / √d_head, out_i = Σ_h Σ_j A_ij x_j (W_V W_Oᵀ)."""
    qk, vo = attn.products()
    B, T, _ = x.shape
    out = torch.zeros_like(x)
    for b in range(B):
        for h in range(attn.n_heads):
            for i in range(T):
                logits = torch.tensor([x[b, j] @ qk[h] @ x[b, i] / math.sqrt(attn.d_head) if (j <= i or not causal) else -math.inf for j in range(T)])
                a = torch.softmax(logits, dim=0)
                out[b, i] += sum(a[j] * (x[b, j] @ vo[h]) for j in range(T))
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_explicit_per_head_computation(causal):
    attn = random_attention(causal=causal)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), explicit_attention(attn, x, causal), rtol=1e-12, atol=1e-12)


def test_products_are_the_head_slices_with_the_stated_transposes():
    attn = random_attention(n_heads=2)
    qk, vo = attn.products()
    for h in range(2):
        torch.testing.assert_close(qk[h], attn.W_K[h] @ attn.W_Q[h].T, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(vo[h], attn.W_V[h] @ attn.W_O[h].T, rtol=1e-14, atol=1e-14)
        assert int(torch.linalg.matrix_rank(qk[h])) == attn.d_head


@pytest.mark.parametrize("causal", [False, True])
def test_same_map_as_torch_multihead_attention(causal):
    gen = torch.Generator().manual_seed(2)
    mha = nn.MultiheadAttention(12, 3, bias=False, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for p in mha.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    ours = from_torch_attention(mha)
    ours.causal = causal
    x = torch.randn(2, 6, 12, generator=gen)
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None
    with torch.no_grad():
        expected, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
        torch.testing.assert_close(ours(x), expected, rtol=1e-10, atol=1e-10)


def test_tied_queries_and_keys_give_a_symmetric_psd_product():
    attn = random_attention(tie_qk=True)
    assert attn.W_K is None and attn.weights()[1] is attn.W_Q
    qk, _ = attn.products()
    torch.testing.assert_close(qk, qk.transpose(1, 2), rtol=0, atol=0)
    assert bool((torch.linalg.eigvalsh(qk) > -1e-12).all())


def test_vit_patches_and_shapes():
    vit = ViT(d_model=16, n_layers=2, n_heads=4, patch=4, generator=0)
    images = torch.arange(2 * 64, dtype=torch.float64).reshape(2, 8, 8)
    patches = vit.patches(images)
    assert patches.shape == (2, 4, 16) and vit.n_tokens == 5
    for r in range(2):
        for c in range(2):
            torch.testing.assert_close(patches[:, 2 * r + c], images[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].reshape(2, 16))
    assert vit(images).shape == (2, 10)


def test_gpt_is_causal():
    gpt = CharGPT(vocab_size=7, context=6, d_model=8, n_layers=2, n_heads=2, generator=0)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    changed = ids.clone()
    changed[0, 4] = 0
    with torch.no_grad():
        a, b = gpt(ids), gpt(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_initialisation_is_seeded_and_init_scale_multiplies_the_attention_weights():
    a, b = ViT(d_model=16, n_heads=2, generator=3), ViT(d_model=16, n_heads=2, generator=3)
    small = ViT(d_model=16, n_heads=2, generator=3, init_scale=0.01)
    for (name, p), q, s in zip(a.named_parameters(), b.parameters(), small.parameters()):
        assert torch.equal(p, q), name
        expected = 0.01 * p if name.split(".")[-1] in ("W_Q", "W_K", "W_V", "W_O") else p
        torch.testing.assert_close(s, expected, rtol=1e-15, atol=0, msg=name)
    assert not torch.equal(a.blocks[0].attn.W_Q, ViT(d_model=16, n_heads=2, generator=4).blocks[0].attn.W_Q)
    std = a.blocks[0].attn.W_V.std().item()
    assert 0.5 / 4 < std < 2 / 4  # entries N(0, 1/d_model)


def test_stable_rank_against_matrix_norms():
    M = torch.randn(6, 4, generator=torch.Generator().manual_seed(5)) @ torch.randn(4, 6, generator=torch.Generator().manual_seed(6))
    expected = torch.linalg.matrix_norm(M, "fro") ** 2 / torch.linalg.matrix_norm(M, 2) ** 2
    torch.testing.assert_close(stable_rank(torch.linalg.svdvals(M)), expected)
    assert stable_rank(torch.zeros(3)).item() == 0.0
    assert stable_rank(torch.tensor([1.0, 1.0, 1.0])).item() == 3.0


def test_tracker_records_the_perturbation_of_each_head():
    vit = ViT(d_model=8, n_layers=2, n_heads=2, generator=0)
    tracker = Tracker(vit)
    tracker.record(0, train_loss=1.0, val_loss=1.0)
    W_Q0 = vit.blocks[1].attn.W_Q.detach().clone()
    W_V0, W_O0 = (w.detach().clone() for w in (vit.blocks[1].attn.W_V, vit.blocks[1].attn.W_O))
    with torch.no_grad():
        vit.blocks[1].attn.W_Q[1] += 0.1 * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
        vit.blocks[1].attn.W_O[0] += 0.1
    tracker.record(5, train_loss=0.5, val_loss=0.6, val_accuracy=0.9)
    out = tracker.results({"note": "test"})
    assert out["step"].tolist() == [0, 5] and out["sv_qk"].shape == (2, 2, 2, 8) and out["config"] == {"note": "test"}
    assert out["sv_qk"][0].abs().max() == 0 and out["stable_rank_qk"][0].abs().max() == 0
    attn = vit.blocks[1].attn
    delta_qk = attn.W_K[1].detach() @ attn.W_Q[1].detach().T - attn.W_K[1].detach() @ W_Q0[1].T
    delta_vo = attn.W_V[0].detach() @ attn.W_O[0].detach().T - W_V0[0] @ W_O0[0].T
    torch.testing.assert_close(out["sv_qk"][1, 1, 1], torch.linalg.svdvals(delta_qk))
    torch.testing.assert_close(out["sv_vo"][1, 1, 0], torch.linalg.svdvals(delta_vo))
    assert out["sv_qk"][1, 0].abs().max() == 0 and out["sv_qk"][1, 1, 0].abs().max() == 0  # untouched heads
    assert int((out["sv_vo"][1, 1, 0] > 1e-10).sum()) <= 2 * attn.d_head
    torch.testing.assert_close(out["stable_rank_vo"][1, 1, 0], stable_rank(torch.linalg.svdvals(delta_vo)))


def test_perturbation_of_a_trained_head_has_rank_at_most_two_d_head():
    vit = ViT(d_model=16, n_layers=1, n_heads=4, generator=0)  # d_head = 4: rank bound 8 < 16
    init = attention_products(vit)
    train(vit, DigitsTask(digits_split(), batch=16), steps=3, every=None, lr=1e-2)
    sv_qk, sv_vo = perturbation_spectra(vit, init)
    assert sv_qk.shape == (1, 4, 8)
    qk, _ = attention_products(vit)
    full = torch.linalg.svdvals(qk - init[0])
    assert float(full[..., 8:].max()) < 1e-12 * float(full.max()) and float(full[..., 7].min()) > 0


def test_activation_and_half_times_against_explicit_loops():
    res = ch06.results("init-scale-sweep")["scale_0.1"]
    steps = res["step"].tolist()
    act, half = lrt.activation_times(res, "vo", 3, 0.25), lrt.half_times(res, "vo", 3)
    L, H = act.shape[:2]
    for layer in range(L):
        for head in range(H):
            series = res["sv_vo"][:, layer, head]
            for i in range(3):
                hits = [s for s, row in zip(steps, series) if row[i] >= 0.25 * series[-1, 0]]
                assert act[layer, head, i] == (hits[0] / steps[-1] if hits else 1.0)
                own = [s for s, row in zip(steps, series) if row[i] >= 0.5 * series[-1, i]]
                assert half[layer, head, i] == own[0] / steps[-1]
    spread = sum(float((t[..., 2] - t[..., 0]).mean()) for t in (lrt.activation_times(res, "qk"), act)) / 2
    assert lrt.gradualness(res) == pytest.approx(spread, rel=1e-15)
    with pytest.raises(LrtError, match="k: expected at most the 8 stored singular values, got 9"):
        lrt.gradualness(res, k=9)
    with pytest.raises(LrtError, match="which: unknown value 'kq'"):
        lrt.activation_times(res, "kq")


def test_digits_split_is_deterministic_disjoint_and_complete():
    a, b, c = digits_split(), digits_split(), digits_split(seed=1)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_val, c.y_val)
    assert a.y_train.numel() + a.y_val.numel() == 1797 and a.x_train.max() <= 1.0
    all_rows = {tuple(r.tolist()) for r in torch.cat([a.x_train, a.x_val]).flatten(1)}
    assert all_rows == {tuple(r.tolist()) for r in c.x_train.flatten(1)} | {tuple(r.tolist()) for r in c.x_val.flatten(1)}


def test_text_split_is_deterministic_and_partitions_the_text():
    a, b, c = text_split(), text_split(), text_split(seed=1)
    assert torch.equal(a.val, b.val) and not torch.equal(a.val, c.val)
    assert a.train.numel() + a.val.numel() == c.train.numel() + c.val.numel() == 464970
    assert 0.08 < a.val.numel() / 464970 < 0.12
    assert "def" in a.decode(a.train[:20000])
    x, y = text_batch(a.train, context=8, batch=4, generator=0)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(x, text_batch(a.train, context=8, batch=4, generator=0)[0])
    xv, yv = text_windows(a.val, context=8, count=3)
    assert xv.shape == (3, 8) and xv[0, 0] == a.val[0]
    assert 2.5 < unigram_cross_entropy(a) < 3.5


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: SelfAttention(10, 3), "n_heads: expected a divisor of d_model = 10, got 3"),
        (lambda: ViT(patch=3), "patch: expected a divisor of image_size = 8, got 3"),
        (lambda: ViT(init_scale=0.0), "init_scale: expected a number > 0, got 0.0"),
        (lambda: ViT(dtype=torch.int64), "dtype: expected a floating torch.dtype"),
        (lambda: ViT()(torch.zeros(2, 7, 7)), "images: expected shape (batch, 8, 8), got (2, 7, 7)"),
        (lambda: CharGPT(vocab_size=5, context=4)(torch.zeros(1, 5, dtype=torch.int64)), "ids: expected int64 of shape (batch, T ≤ 4)"),
        (lambda: digits_split(val_fraction=1.5), "val_fraction: expected a number in [0, 1], got 1.5"),
        (lambda: digits_split(val_fraction=0), "val_fraction: expected a number in (0, 1), got 0.0"),
        (lambda: text_split(block=10), "block: expected an int >= 64, got 10"),
        (lambda: text_batch(torch.arange(5), context=8, batch=1, generator=0), "ids: expected a 1-D tensor longer than context + 1 = 9"),
        (lambda: train(ViT(), DigitsTask(digits_split()), steps=1, optimizer="rmsprop"), "optimizer: unknown value 'rmsprop'; expected one of adam, sgd"),
        (lambda: train(ViT(), TextTask(text_split()), steps=1), "task: a ViT cannot be trained on a TextTask"),
        (lambda: train(ViT(), DigitsTask(digits_split()), steps=0), "steps: expected an int >= 1, got 0"),
        (lambda: perturbation_spectra(ViT(), (torch.zeros(1), torch.zeros(1))), "init: expected two tensors of shape (2, 4, 32, 32)"),
        (lambda: load_results("/nonexistent/x.pt"), "path: expected an existing results file"),
    ],
)
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(LrtError) as err:
        call()
    assert message in str(err.value)


def test_type_errors():
    with pytest.raises(LrtTypeError, match="model: expected a torch.nn.Module"):
        lrt.attention_products("vit")
    with pytest.raises(LrtTypeError, match="mha: expected a torch.nn.MultiheadAttention"):
        from_torch_attention(nn.Linear(2, 2))
    with pytest.raises(LrtTypeError, match="generator: expected a torch.Generator or an int seed"):
        ViT(generator="seed")


def test_results_round_trip_with_weights_only(tmp_path):
    out = train(ViT(d_model=8, n_heads=2, n_layers=1), DigitsTask(digits_split(), batch=8), steps=2, every=1, config={"name": "x", "lr": 1e-3})
    back = load_results(save_results(out, tmp_path / "r.pt"))
    assert back["config"] == {"name": "x", "lr": 1e-3} and set(back) == set(out)
    for key in out:
        if key != "config":
            torch.testing.assert_close(back[key], out[key], rtol=0, atol=0, equal_nan=True)


def assert_first_rows_equal(short: dict, committed: dict) -> None:
    """The short run's rows are the committed file's first rows (within tests/reproduction.py's tolerance)."""
    rows = short["step"].numel()
    series = [k for k in short if k != "config" and not k.endswith(("_init", "_end"))]
    assert_reproduces(short, {k: committed[k][:rows] for k in series}, series)
    assert_reproduces(short, committed, ("sv_qk_init", "sv_vo_init"))
    same = {k: v for k, v in short["config"].items() if k != "steps"}
    assert {k: committed["config"][k] for k in same} == same


def test_short_vit_run_from_the_cli_reproduces_the_committed_file(tmp_path, capsys):
    out = tmp_path / "vit.pt"
    assert main(["run", "vit-rank", "--steps", str(2 * ch06.VIT_TRAIN["every"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert_first_rows_equal(load_results(out), ch06.results("vit-rank"))


def test_short_gpt_run_reproduces_the_committed_file():
    assert_first_rows_equal(ch06.gpt_training(steps=2 * ch06.GPT_TRAIN["every"]), ch06.results("gpt-rank"))


def test_short_sweep_reproduces_the_committed_file():
    short = ch06.sweep_training(steps=2 * ch06.SWEEP_TRAIN["every"])
    committed = ch06.results("init-scale-sweep")
    assert set(short) == set(committed)
    for key in short:
        assert_first_rows_equal(short[key], committed[key])


def test_tracking_benchmark_reports_the_ratio(capsys):
    assert main(["bench", "tracking", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert math.isfinite(report["ratios"]["tracked_over_plain"]) and report["config"]["every"] == ch06.VIT_TRAIN["every"]


def test_committed_files_are_small():
    for name in ch06.FILES.values():
        assert (ch06.DATA / name).stat().st_size <= 2_000_000


def test_missing_results_file_names_the_run_that_creates_it(tmp_path):
    with pytest.raises(lrt.LrtError, match=r"create it with `python -m lrt run p2-seeds`"):
        load_results(tmp_path / "absent.pt", run="p2-seeds")


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5])
def test_text_split_rejects_a_validation_share_outside_the_open_unit_interval(bad):
    with pytest.raises(LrtError, match="val_fraction"):
        text_split(val_fraction=bad)
