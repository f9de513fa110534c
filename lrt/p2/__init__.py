"""Part II (chapters 7–10): the one-layer transformer of Li et al. (SAM 2024) on orthogonal-pattern
data — the data model, the network, SGD training, update spectra, lucky neurons, pruning and LoRA,
one module per concern. Imports only :mod:`lrt.core`.

Data model (:mod:`lrt.p2.data`): M orthogonal patterns μ_1 … μ_M (the rows of
``PatternData.patterns``); each class c owns ``patterns_per_class`` label-relevant patterns; a
sample of class c has round(α_* L) tokens of its own patterns, round(α_# L) *confusion* tokens of
one other class and the rest drawn from the label-irrelevant patterns, each token plus Gaussian
noise N(0, τ²/d I). The label is the majority vote over the class patterns.

Network (:mod:`lrt.p2.network`, :mod:`lrt.p2.lora`): F(X) = (1/L) Σ_l aᵀ ReLU(W_O W_V X
softmax_s((W_K x_s)ᵀ W_Q x_l)) with W_Q, W_K, W_V, W_O trained and ``a`` fixed; C outputs (one row
of ``a`` per class) in the C-class variant. Training (:mod:`lrt.p2.training`): hinge loss
(:mod:`lrt.p2.losses`, one-vs-rest for C classes), minibatch SGD, torch autograd in float64, every
random draw from an explicit generator. Measurements: :mod:`lrt.p2.attention`,
:mod:`lrt.p2.spectra`, :mod:`lrt.p2.pruning`.
"""

from lrt.p2.config import P2Config
from lrt.p2.data import PatternData, make_patterns, sample_pattern_data
from lrt.p2.network import WEIGHTS, OneLayerTransformer, transformer_forward
from lrt.p2.lora import LoRATransformer
from lrt.p2.losses import evaluate, gradients, hinge_loss, zero_one_error
from lrt.p2.attention import attention_by_kind, relevant_attention
from lrt.p2.training import TRAIN_LOG_SAMPLES, P2Run, TrainLog, run_p2, seeds_for, setup_p2, train
from lrt.p2.spectra import off_span_fraction, pattern_projections, run_summary, spectrum_of, update_spectrum
from lrt.p2.pruning import ORDERS, lucky_fraction, prune_indices, pruned, pruning_curve, row_norms

__all__ = [
    "P2Config",
    "PatternData",
    "make_patterns",
    "sample_pattern_data",
    "transformer_forward",
    "OneLayerTransformer",
    "LoRATransformer",
    "hinge_loss",
    "zero_one_error",
    "evaluate",
    "relevant_attention",
    "attention_by_kind",
    "gradients",
    "TrainLog",
    "train",
    "P2Run",
    "setup_p2",
    "run_p2",
    "run_summary",
    "update_spectrum",
    "spectrum_of",
    "pattern_projections",
    "off_span_fraction",
    "row_norms",
    "lucky_fraction",
    "prune_indices",
    "pruned",
    "pruning_curve",
]
