"""Real transformers (chapter 6): a small ViT and a character GPT built from one self-attention block,
the data they train on (8×8 digits, text), and the spectral tracking of the attention perturbations
ΔW_K W_Qᵀ and ΔW_V W_Oᵀ during training, with the gradualness measurements of P1's experiments.
Imports only :mod:`lrt.core`.
"""
