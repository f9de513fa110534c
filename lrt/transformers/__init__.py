"""Real transformers (chapter 6): a small ViT and a character GPT built from one self-attention block,
the data they train on (8×8 digits, text, and the reader's own text files and CIFAR-10 binary
directories), and the spectral tracking of the attention perturbations ΔW_K W_Qᵀ and ΔW_V W_Oᵀ during
training — of lrt's models and of any model built from ``torch.nn.MultiheadAttention`` — with the
gradualness measurements of P1's experiments; ``distributed`` runs the training on a GPU or on several
processes (DistributedDataParallel) and in bfloat16.
Imports only :mod:`lrt.core`.
"""
