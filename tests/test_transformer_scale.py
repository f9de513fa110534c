"""Chapter 6 at the paper's scale: several processes, devices and precisions, the reader's own data,
checkpoints, and tracking models built from torch's own attention modules."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lrt
from lrt.cli import main
from lrt.core.errors import LrtError
from lrt.experiments import ch06_beyond_diagonal as ch06
from lrt.transformers.datasets import ImageSplit, cifar10_split, digits_split, text_split
from lrt.transformers.models import ViT, attention_layers, attention_products, head_weights
from lrt.transformers.distributed import Runtime, runtime
from lrt.core.results import load_results
from lrt.transformers.tracking import DigitsTask, train

ROOT = Path(__file__).resolve().parents[1]
SPECTRA = ("sv_qk", "sv_vo", "stable_rank_qk", "stable_rank_vo", "sv_qk_end", "sv_vo_end")

# --- several processes ------------------------------------------------------------------------------

#: Tolerance of the 1- vs 2-process comparison, fixed before the first 2-process run was measured.
#: Both runs draw the same global mini-batches from the same seed and start from the same weights; the
#: 2-process run computes each half-batch's mean loss on its own process and DDP averages the two
#: gradients, so the only difference is the order of float64 sums (unit round-off 1.1e-16) in the
#: gradient and in the matrix products of a 32- instead of a 64-example batch. Adam's update is
#: Lipschitz in the gradient away from ε and the 20 steps compound the differences only mildly, and
#: singular values move by at most the spectral norm of a perturbation (Weyl), so the spectra differ at
#: round-off level times a modest factor. 1e-9 leaves six orders of magnitude of headroom above that,
#: and stays five orders below what a real fault changes: one Adam step at lr 1e-3 moves weights by
#: about 1e-3, so a rank training on the wrong share, gradients summed instead of averaged, or a
#: mis-seeded batch shows up at 1e-4 or more.
PROCESS_TOLERANCE = 1e-9


def torchrun(*args, nproc=2, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "lrt", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """The book's ViT for 20 steps on two gloo processes (torchrun), and its directory."""
    where = tmp_path_factory.mktemp("two")
    out = torchrun("run", "vit-rank", "--steps", str(2 * ch06.VIT_TRAIN["every"]), "--device", "cpu", "--out", str(where / "two.pt"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(where / "two.pt")  # only rank 0 writes and prints
    return where


def test_two_processes_track_the_same_spectra_as_one(tmp_path, two_process_run, capsys):
    one = tmp_path / "one.pt"
    assert main(["run", "vit-rank", "--steps", str(2 * ch06.VIT_TRAIN["every"]), "--out", str(one)]) == 0
    a, b = load_results(one), load_results(two_process_run / "two.pt")
    assert b["config"].pop("processes") == 2 and a["config"] == b["config"]
    assert torch.equal(a["step"], b["step"]) and set(a) == set(b)
    torch.testing.assert_close(a["sv_qk_init"], b["sv_qk_init"], rtol=0, atol=0)  # same initial weights
    for key in (*SPECTRA, "train_loss", "val_loss", "val_accuracy"):
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=PROCESS_TOLERANCE, equal_nan=True, msg=key)
    moved = float((a["sv_qk"][-1] - a["sv_qk"][1]).abs().max())
    assert moved > 1e3 * PROCESS_TOLERANCE  # the compared spectra do change between the records


def test_a_two_process_run_resumed_between_records_equals_the_uninterrupted_one(tmp_path, two_process_run):
    out = tmp_path / "resumed.pt"
    first = torchrun("run", "vit-rank", "--steps", "15", "--out", str(out))  # checkpoint at step 15, between records
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun("run", "vit-rank", "--steps", "20", "--resume", "--out", str(out))
    assert second.returncode == 0, second.stderr[-3000:]
    resumed, straight = load_results(out), load_results(two_process_run / "two.pt")
    assert resumed["config"] == straight["config"] and resumed["step"].tolist() == [0, 10, 20]
    for key, value in straight.items():  # each process takes up its own running loss sum again: bit for bit
        if key != "config":
            torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, equal_nan=True, msg=key)


SPECTRA_SCRIPT = """
import sys, torch
import lrt
from lrt.transformers.tracking import perturbation_spectra
rt = lrt.runtime("cpu")
vit = lrt.ViT(d_model=16, n_layers=1, n_heads=2, generator=0)   # 2 products x 2 heads = 4 matrices for 3 processes
init = lrt.attention_products(vit)
with torch.no_grad():
    for p in vit.parameters():
        p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=p.dtype))
spectra = perturbation_spectra(vit, init, runtime=rt)
if rt.main:
    torch.save({"world": rt.world, "spectra": spectra, "alone": perturbation_spectra(vit, init)}, sys.argv[1])
rt.close()
"""


def test_spectra_shared_unevenly_between_three_processes_are_gathered_in_order(tmp_path):
    script, out = tmp_path / "spectra.py", tmp_path / "spectra.pt"
    script.write_text(SPECTRA_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3", str(script), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    res = torch.load(out, weights_only=True)
    assert res["world"] == 3  # shares of 2, 2 and 0 matrices
    for gathered, alone in zip(res["spectra"], res["alone"]):
        torch.testing.assert_close(gathered, alone, rtol=0, atol=0)  # the same LAPACK call on each matrix
        assert float(alone.min()) > 0


def test_batch_must_split_evenly_between_processes():
    with pytest.raises(LrtError, match=r"batch: expected a multiple of the number of processes \(3\), got 64"):
        Runtime(world=3, rank=1).shard(64)
    assert Runtime(world=2, rank=1).shard(64) == slice(32, 64)


# --- checkpoints --------------------------------------------------------------------------------------


def small_vit():
    return ViT(d_model=16, n_layers=1, n_heads=2, generator=0)


def test_resume_continues_a_run_exactly(tmp_path):
    task = DigitsTask(digits_split(), batch=16)
    straight = train(small_vit(), task, steps=12, every=4, generator=1, checkpoint=tmp_path / "a.ckpt", checkpoint_every=4)
    ckpt = tmp_path / "b.ckpt"
    train(small_vit(), task, steps=6, every=4, generator=1, checkpoint=ckpt, checkpoint_every=4)  # ends between records
    resumed = train(small_vit(), task, steps=12, every=4, generator=1, checkpoint=ckpt, checkpoint_every=4, resume=True)
    assert resumed["step"].tolist() == straight["step"].tolist() == [0, 4, 8, 12]
    for key, value in straight.items():
        if key != "config":
            torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, equal_nan=True, msg=key)
    again = train(small_vit(), task, steps=12, every=4, generator=1, checkpoint=ckpt, checkpoint_every=4, resume=True)
    torch.testing.assert_close(again["sv_vo"], straight["sv_vo"], rtol=0, atol=0)  # a finished run: nothing to do


def test_resume_from_the_cli_and_a_mismatched_checkpoint(tmp_path, capsys):
    out = tmp_path / "vit.pt"
    assert main(["run", "vit-rank", "--steps", "10", "--out", str(out)]) == 0
    assert out.with_name("vit.pt.ckpt").is_file()
    assert main(["run", "vit-rank", "--steps", "20", "--out", str(out), "--resume"]) == 0
    resumed = load_results(out)
    assert resumed["step"].tolist() == [0, 10, 20] and resumed["config"]["steps"] == 20
    assert main(["run", "vit-rank", "--steps", "20", "--out", str(out), "--resume", "--batch", "32"]) == 2
    err = capsys.readouterr().err
    assert "vit.pt.ckpt" in err and "batch" in err and "Traceback" not in err


def test_a_damaged_checkpoint_is_named(tmp_path):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(LrtError, match="x.ckpt"):
        train(small_vit(), DigitsTask(digits_split(), batch=8), steps=2, every=1, checkpoint=bad, resume=True)


# --- the reader's data ----------------------------------------------------------------------------------


def write_text(path, n_chars=7000):
    words = ["attention", "rank", "gradual", "naïve", "Straße", "α→β", "𝔼[x]", "\n"]
    gen = np.random.default_rng(0)
    text = ""
    while len(text) < n_chars:
        text += words[int(gen.integers(len(words)))] + " "
    path.write_text(text, encoding="utf-8")
    return text


def test_text_file_split_partitions_the_text_into_blocks(tmp_path):
    text = write_text(tmp_path / "t.txt")
    data = text_split(tmp_path / "t.txt", block=512, val_fraction=0.25)
    assert data.vocab == "".join(sorted(set(text)))
    blocks = [text[i : i + 512] for i in range(0, len(text), 512)]
    train_text, val_text = data.decode(data.train), data.decode(data.val)
    assert len(train_text) + len(val_text) == len(text)
    assert "".join(b for b in blocks if b in val_text) == val_text  # whole blocks, in text order
    assert "".join(b for b in blocks if b not in val_text) == train_text


def test_gpt_run_on_a_text_file(tmp_path, capsys):
    write_text(tmp_path / "t.txt")
    out = tmp_path / "gpt.pt"
    assert main(["run", "gpt-rank", "--text", str(tmp_path / "t.txt"), "--context", "16", "--steps", "2", "--out", str(out)]) == 0
    res = load_results(out)
    assert res["config"]["text"] == str(tmp_path / "t.txt") and res["config"]["context"] == 16 and res["step"].tolist() == [0, 2]
    assert math.isfinite(float(res["val_loss"][-1])) and res["sv_qk"].dtype == torch.float64


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "expected an existing UTF-8 text file"),
        (b"caf\xe9 latin-1 bytes " * 400, "not UTF-8 text"),
        ("short".encode(), "expected at least 2 blocks"),
    ],
)
def test_bad_text_files_are_named(tmp_path, content, needle, capsys):
    path = tmp_path / "bad.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LrtError, match=re.escape(needle)) as err:
        text_split(path)
    assert str(path) in str(err.value)
    assert main(["run", "gpt-rank", "--text", str(path), "--steps", "1", "--out", str(tmp_path / "x.pt")]) == 2
    assert str(path) in capsys.readouterr().err


def write_cifar(directory, counts=(("data_batch_1.bin", 24), ("data_batch_2.bin", 16), ("test_batch.bin", 10)), seed=0):
    """CIFAR-10's binary format: records of 1 label byte and 3072 pixel bytes (1024 red, 1024 green,
    1024 blue, each a 32 × 32 image in row-major order)."""
    directory.mkdir(exist_ok=True)
    gen = np.random.default_rng(seed)
    written = {}
    for name, n in counts:
        labels = gen.integers(0, 10, n, dtype=np.uint8)
        pixels = gen.integers(0, 256, (n, 3072), dtype=np.uint8)
        (directory / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
        written[name] = (labels, pixels)
    return written


def test_cifar10_binary_directory(tmp_path):
    written = write_cifar(tmp_path / "cifar")
    data = cifar10_split(tmp_path / "cifar")
    assert isinstance(data, ImageSplit) and data.n_classes == 10
    assert data.x_train.shape == (40, 3, 32, 32) and data.x_train.dtype == torch.uint8 and data.x_val.shape == (10, 3, 32, 32)
    labels, pixels = written["data_batch_2.bin"]
    assert data.y_train[24:].tolist() == labels.tolist()
    assert int(data.x_train[24 + 3, 1, 2, 5]) == int(pixels[3, 1024 + 2 * 32 + 5])  # green, row 2, column 5
    assert data.y_val.tolist() == written["test_batch.bin"][0].tolist()


def test_vit_on_colour_images_cuts_patches_across_channels():
    vit = ViT(image_size=32, channels=3, patch=8, d_model=16, n_layers=1, n_heads=2, generator=0)
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.float64).reshape(2, 3, 32, 32)
    patches = vit.patches(images)
    assert patches.shape == (2, 16, 3 * 64) and vit.n_tokens == 17
    torch.testing.assert_close(patches[:, 4 * 1 + 2], images[:, :, 8:16, 16:24].reshape(2, 192), rtol=0, atol=0)
    assert vit(images).shape == (2, 10)
    with pytest.raises(LrtError, match=r"images: expected shape \(batch, 3, 32, 32\)"):
        vit(torch.zeros(2, 32, 32))


def test_vit_run_on_a_cifar10_directory(tmp_path, capsys):
    write_cifar(tmp_path / "cifar")
    out = tmp_path / "vit.pt"
    assert main(["run", "vit-rank", "--images", str(tmp_path / "cifar"), "--steps", "2", "--batch", "8", "--out", str(out)]) == 0
    res = load_results(out)
    assert res["config"]["images"] == str(tmp_path / "cifar") and res["config"]["channels"] == 3
    assert res["step"].tolist() == [0, 2] and 0 <= float(res["val_accuracy"][-1]) <= 1


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("no-directory", "expected a directory in CIFAR-10's binary format"),
        ("no-train", "data_batch_*.bin"),
        ("no-test", "test_batch.bin"),
        ("truncated", "records of 3073 bytes"),
        ("label", "label byte 12"),
    ],
)
def test_bad_cifar10_directories_are_named(tmp_path, damage, needle):
    d = tmp_path / "cifar"
    if damage != "no-directory":
        write_cifar(d)
    if damage == "no-train":
        for f in d.glob("data_batch_*.bin"):
            f.unlink()
    elif damage == "no-test":
        (d / "test_batch.bin").unlink()
    elif damage == "truncated":
        (d / "data_batch_2.bin").write_bytes((d / "data_batch_2.bin").read_bytes()[:-7])
    elif damage == "label":
        raw = bytearray((d / "test_batch.bin").read_bytes())
        raw[3 * 3073] = 12
        (d / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(LrtError, match=re.escape(needle)) as err:
        cifar10_split(d)
    assert str(d) in str(err.value)


# --- models built from torch's attention ---------------------------------------------------------------


class TorchEncoderClassifier(nn.Module):
    """Digits as 8 tokens (the rows) of 8 pixels, through torch's own nn.TransformerEncoder."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True, bias=False, dtype=torch.float64)
        self.embed = nn.Linear(8, 16, dtype=torch.float64)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 10, dtype=torch.float64)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / math.sqrt(p.shape[-1]))

    def forward(self, images):
        return self.head(self.encoder(self.embed(images)).mean(dim=1))


def per_head_from_torch_forward(mha: nn.MultiheadAttention, x: torch.Tensor, qk: torch.Tensor, vo: torch.Tensor):
    """Check lrt's per-head products against what torch's module computes: its per-head attention
    weights are softmax(x_j (W_K W_Qᵀ)_h x_iᵀ / √d_head) over j, and its output is
    Σ_h A_h x (W_V W_Oᵀ)_h."""
    H, dh = mha.num_heads, mha.head_dim
    with torch.no_grad():
        out, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)  # weights (B, H, T, T)
    logits = torch.einsum("bjd,hde,bie->bhij", x, qk, x) / math.sqrt(dh)
    torch.testing.assert_close(weights, torch.softmax(logits, dim=-1), rtol=1e-12, atol=1e-12)
    expected = sum(weights[:, h] @ x @ vo[h] for h in range(H))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_tracker_on_a_torch_transformer_encoder():
    model = TorchEncoderClassifier()
    layers = attention_layers(model)
    assert len(layers) == 2 and all(isinstance(m, nn.MultiheadAttention) for m in layers)
    qk0, vo0 = attention_products(model)
    res = train(model, DigitsTask(digits_split(), batch=32), steps=30, every=10, generator=1, lr=3e-3)
    assert res["val_accuracy"][-1] > res["val_accuracy"][0]  # it learned something
    qk, vo = attention_products(model)
    assert qk.shape == (2, 2, 16, 16) and qk.dtype == torch.float64
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(3))
    for i, mha in enumerate(layers):
        per_head_from_torch_forward(mha, x, qk[i], vo[i])
        per_head_from_torch_forward(mha, x, *(p for p in lrt.from_torch_attention(mha).products()))
    expected = torch.linalg.svdvals(qk - qk0)
    torch.testing.assert_close(res["sv_qk"][-1], expected[..., : res["sv_qk"].shape[-1]], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(res["sv_vo"][-1], torch.linalg.svdvals(vo - vo0)[..., :16], rtol=1e-12, atol=1e-14)
    assert float(res["sv_qk"][-1].amax()) > 1e-3  # the perturbations are not zero


def test_torch_attention_with_biases_and_separate_projections():
    mha = nn.MultiheadAttention(12, 3, kdim=12, vdim=12, batch_first=True, dtype=torch.float64)
    assert mha.in_proj_weight is not None  # equal dims: torch packs the projections
    W_Q, W_K, W_V, W_O = head_weights(mha)
    assert W_Q.shape == (3, 12, 4)
    torch.testing.assert_close(W_Q[1].T, mha.in_proj_weight[4:8].detach(), rtol=0, atol=0)
    torch.testing.assert_close(W_O[2], mha.out_proj.weight[:, 8:12].detach(), rtol=0, atol=0)
    odd = nn.MultiheadAttention(12, 3, kdim=6, vdim=6, batch_first=True)
    with pytest.raises(LrtError, match="kdim"):
        head_weights(odd)


# --- precision and devices ------------------------------------------------------------------------------


def test_bf16_autocast_trains_and_keeps_the_spectra_in_float64():
    rt = runtime("cpu", "bf16")
    vit = ViT(d_model=16, n_layers=1, n_heads=2, generator=0, dtype=rt.dtype)
    with rt.autocast():
        assert vit(torch.zeros(2, 8, 8, dtype=torch.float32)).dtype == torch.bfloat16
    task = DigitsTask(digits_split(), batch=32)
    low = train(vit, task, steps=20, every=10, generator=1, runtime=rt)
    ref = train(ViT(d_model=16, n_layers=1, n_heads=2, generator=0, dtype=torch.float32), task, steps=20, every=10, generator=1)
    assert low["sv_qk"].dtype == torch.float64 and next(vit.parameters()).dtype == torch.float32
    gap = float((low["sv_vo"][-1] - ref["sv_vo"][-1]).norm() / ref["sv_vo"][-1].norm())
    # bf16 keeps 8 significant bits (relative rounding 2^-9): the two runs differ, but by a few percent
    # of the perturbation, not by its size (tolerance fixed before the measurement)
    assert 0 < gap < 0.25
    assert float(low["val_loss"][-1]) < float(low["val_loss"][0])


def test_cli_rejects_unknown_devices_and_options_a_run_does_not_take(capsys):
    if not torch.cuda.is_available():
        assert main(["run", "vit-rank", "--steps", "1", "--device", "cuda", "--out", "/nonexistent/x.pt"]) == 2
        assert "device: 'cuda' requested but no GPU is visible" in capsys.readouterr().err
    assert main(["run", "gpt-rank", "--images", "x", "--steps", "1"]) == 2
    assert "--images: the run 'gpt-rank' does not take this option" in capsys.readouterr().err
    assert main(["run", "p2-seeds", "--device", "cpu", "--steps", "1"]) == 2
    assert "--device: the run 'p2-seeds' does not take this option" in capsys.readouterr().err
    assert main(["bench", "staircase", "--device", "cpu"]) == 2
    assert "--device: the benchmark 'staircase' does not take this option" in capsys.readouterr().err


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run this file unchanged on a GPU machine)")


@cuda
def test_cuda_run_follows_the_cpu_run(tmp_path, capsys):
    steps = 2 * ch06.VIT_TRAIN["every"]
    assert main(["run", "vit-rank", "--steps", str(steps), "--device", "cuda", "--out", str(tmp_path / "gpu.pt")]) == 0
    gpu, cpu = load_results(tmp_path / "gpu.pt"), ch06.results("vit-rank")
    for key in SPECTRA[:4]:
        torch.testing.assert_close(gpu[key], cpu[key][: steps // ch06.VIT_TRAIN["every"] + 1], rtol=0, atol=PROCESS_TOLERANCE, msg=key)


@cuda
def test_cuda_bf16_run_and_benchmark(tmp_path, capsys):
    assert main(["run", "vit-rank", "--steps", "20", "--device", "cuda", "--precision", "bf16", "--out", str(tmp_path / "b.pt")]) == 0
    assert load_results(tmp_path / "b.pt")["sv_qk"].dtype == torch.float64
    assert main(["bench", "tracking", "--quick", "--device", "cuda", "--json"]) == 0


def test_a_diverging_run_stops_with_an_error_naming_the_learning_rate():
    with pytest.raises(LrtError, match=r"lr: training diverged at step \d+ \(loss nan\)"):
        train(small_vit(), DigitsTask(digits_split(), batch=16), steps=20, every=None, lr=1e12, optimizer="sgd")
