"""Parameter and multiply–accumulate (MAC) counts, for model cards and benchmarks.

MACs are counted with forward hooks on the layers that dominate the cost (convolutions, linear layers and
attention projections); normalisation, activations and pooling are ignored. FLOPs ≈ 2 × MACs.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    kernel = module.weight[0].numel()  # (C_in / groups) · k_1 · … · k_n
    return output.numel() * kernel


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def _attention_macs(module: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor) -> int:
    e = module.embed_dim
    n_q, n_k = query.shape[:-1].numel(), key.shape[:-1].numel()
    projections = (n_q + 2 * n_k) * e * e + n_q * e * e  # q, k, v in; output projection
    seq_k = key.shape[1] if module.batch_first else key.shape[0]
    scores = 2 * n_q * seq_k * e  # q·kᵀ and attention·v
    return projections + scores


@torch.no_grad()
def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward pass of `model` on `inputs` (in eval mode; the model's mode is restored)."""
    total = 0

    def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
        nonlocal total
        if isinstance(module, nn.MultiheadAttention):
            total += _attention_macs(module, args[0], args[1])
        elif isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            total += _conv_macs(module, output)
        elif isinstance(module, nn.Linear):
            total += _linear_macs(module, output)

    inside_attention = {
        id(m) for a in model.modules() if isinstance(a, nn.MultiheadAttention) for m in a.modules() if m is not a
    }
    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear | nn.MultiheadAttention)
        and id(m) not in inside_attention
    ]
    was_training = model.training
    model.eval()
    try:
        model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
