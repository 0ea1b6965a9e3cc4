"""Lookup-free quantization (MAGVIT-v2, arXiv 2310.05737) as BTB3D uses it: each of `bits` channels becomes +-1.

A token id is the binary number of its signs, channel 0 the most significant bit. Training adds the entropy
penalty (low per-token entropy, high codebook-usage entropy) and a commitment loss.

`lfq_entropy_loss` is the fast path: the softmax over all 2**bits codes of the affinity 2 x.c factorises over the
bits (p(c) = prod_d sigmoid(4 tau x_d c_d)), so the per-token entropy is a sum of per-bit binary entropies and the
codebook distribution is an outer product. `lfq_entropy_loss_ref` is the upstream formula over the explicit
codebook; tests pin the two together (values and gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bit_weights(bits: int, device=None) -> torch.Tensor:
    """(bits,) int64: [2**(bits-1), ..., 2, 1], channel 0 the most significant bit."""
    return 2 ** torch.arange(bits - 1, -1, -1, device=device)


def codes_to_indices(codes: torch.Tensor) -> torch.Tensor:
    """(b, bits, *grid) signs (> 0 means bit 1) -> (b, *grid) int64 token ids."""
    weights = bit_weights(codes.shape[1], codes.device).view(1, -1, *([1] * (codes.ndim - 2)))
    return ((codes > 0).long() * weights).sum(dim=1)


def indices_to_codes(indices: torch.Tensor, bits: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(b, *grid) int64 ids -> (b, bits, *grid) codes in {-1, +1}."""
    weights = bit_weights(bits, indices.device).view(1, -1, *([1] * (indices.ndim - 1)))
    on = (indices.unsqueeze(1) & weights) != 0
    return on.to(dtype) * 2 - 1


def lfq_entropy_loss(
    latent: torch.Tensor, *, inv_temperature: float = 100.0, diversity_gamma: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAGVIT-v2's entropy penalty, factorised over the bits.

    Args:
        latent: (n, bits) pre-quantization values, float32.
    Returns:
        (loss, per_sample_entropy, codebook_entropy), loss = per_sample_entropy - diversity_gamma * codebook_entropy.
        The codebook distribution has 2**bits entries: memory n * 2**bits, like upstream.
    """
    logit = 4.0 * inv_temperature * latent
    p_on = torch.sigmoid(logit)
    # Binary entropy of each bit from logits (exact and stable): H = softplus(l) - l * sigmoid(l).
    per_sample = (F.softplus(logit) - logit * p_on).sum(dim=-1).mean()
    # Code probabilities in the id order of `bit_weights`: outer products, most significant bit first.
    probs = torch.ones_like(latent[:, :1])
    for d in range(latent.shape[1]):
        pair = torch.stack([1.0 - p_on[:, d], p_on[:, d]], dim=-1)  # (n, 2): bit off, bit on
        probs = (probs.unsqueeze(-1) * pair.unsqueeze(1)).flatten(1)
    avg = probs.mean(dim=0)
    codebook = -(avg * torch.log(avg + 1e-5)).sum()
    return per_sample - diversity_gamma * codebook, per_sample, codebook


def lfq_entropy_loss_ref(
    latent: torch.Tensor, *, inv_temperature: float = 100.0, diversity_gamma: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference: softmax of the affinity against every code of the explicit codebook (upstream's formula)."""
    bits = latent.shape[1]
    codebook = indices_to_codes(torch.arange(2**bits, device=latent.device).unsqueeze(0), bits, latent.dtype)[0].T
    affinity = 2 * latent @ codebook.T * inv_temperature  # (n, 2**bits)
    probs = affinity.softmax(dim=-1)
    log_probs = F.log_softmax(affinity + 1e-5, dim=-1)
    avg = probs.mean(dim=0)
    codebook_entropy = -(avg * torch.log(avg + 1e-5)).sum()
    per_sample = -(probs * log_probs).sum(dim=-1).mean()
    return per_sample - diversity_gamma * codebook_entropy, per_sample, codebook_entropy


class LFQ(nn.Module):
    """Binarise each latent channel to +-1 (straight-through gradient in training) and return token ids."""

    def __init__(self, *, bits: int, commitment_weight: float = 0.25, diversity_gamma: float = 1.0):
        super().__init__()
        self.bits = bits
        self.commitment_weight = commitment_weight
        self.diversity_gamma = diversity_gamma

    def forward(
        self, z: torch.Tensor, *, entropy_weight: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """z (b, bits, t, h, w) -> (quantized like z, ids (b, t, h, w), losses).

        losses: ``aux`` = entropy_weight * entropy + commitment_weight * commitment, plus the parts. They are
        computed only when ``entropy_weight`` > 0 or the module is training; otherwise zeros.
        """
        if z.shape[1] != self.bits:
            raise ValueError(f"LFQ expects {self.bits} channels, got {z.shape[1]}")
        z32 = z.float()
        quantized = torch.where(z32 > 0, 1.0, -1.0)
        ids = codes_to_indices(quantized)
        zero = z32.new_zeros(())
        losses = {
            "aux": zero,
            "entropy": zero,
            "per_sample_entropy": zero,
            "codebook_entropy": zero,
            "commitment": zero,
        }
        if self.training:
            flat = z32.movedim(1, -1).reshape(-1, self.bits)
            entropy, per_sample, codebook = lfq_entropy_loss(flat, diversity_gamma=self.diversity_gamma)
            commitment = F.mse_loss(z32, quantized)
            losses = {
                "aux": entropy * entropy_weight + commitment * self.commitment_weight,
                "entropy": entropy,
                "per_sample_entropy": per_sample,
                "codebook_entropy": codebook,
                "commitment": commitment,
            }
            quantized = z32 + (quantized - z32).detach()
        return quantized.to(z.dtype), ids, losses
