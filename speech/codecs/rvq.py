"""Residual vector quantization with EMA codebooks (SoundStream / EnCodec style).

Each stage quantizes the residual the previous stages left; the quantized vector is the sum of the chosen
codewords. Codebooks are updated by exponential moving averages of the vectors assigned to them (not by
gradients), start from samples of the first batch, and a codeword that falls out of use is restarted at a
random vector of the current batch, which keeps small codebooks from collapsing on small data.

Under data parallelism (``torch.distributed`` initialized) every rank must hold the same codebooks: the batch
statistics are summed over the ranks before the EMA step, and the vectors that start or restart codewords are
drawn by rank 0 and broadcast. Without it each rank would learn its own codebooks from its shard of the data.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the data-parallel ranks (in place; ``t`` itself on a single process)."""
    if _distributed():
        dist.all_reduce(t)
    return t


def random_rows(x: torch.Tensor, n: int) -> torch.Tensor | None:
    """``n`` random rows (n, dim) of x (m, dim) in float32, the same on every rank (rank 0 draws them);
    None when there is nothing to draw from (rank 0's x is empty). Every rank must call it: it communicates."""
    found = len(x) > 0
    rows = x[torch.randint(len(x), (n,), device=x.device)].float() if found else x.new_zeros(n, x.shape[1]).float()
    if _distributed():
        flag = torch.tensor(float(found), device=x.device)
        dist.broadcast(flag, 0)
        dist.broadcast(rows, 0)
        found = bool(flag)
    return rows if found else None


class EMACodebook(nn.Module):
    """One codebook of ``codebook_size`` vectors of width ``dim``, learned by EMA k-means updates.

    Args:
        dim: codeword width.
        codebook_size: number of codewords.
        decay: EMA decay of the cluster statistics.
        dead_threshold: a codeword whose EMA usage falls below this is restarted from the batch.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        decay: float = 0.99,
        dead_threshold: float = 0.1,
        eps: float = 1e-5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.decay = decay
        self.dead_threshold = dead_threshold
        self.eps = eps
        self.register_buffer("embed", torch.randn(codebook_size, dim, **dd))
        self.register_buffer("cluster_size", torch.ones(codebook_size, **dd))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool, device=device))

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, dim) -> squared distances (n, codebook_size)."""
        embed = self.embed.float()
        x = x.float()
        return x.pow(2).sum(-1, keepdim=True) - 2 * x @ embed.T + embed.pow(2).sum(-1)

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, dim) -> codes (n,) int64."""
        return self.distances(x).argmin(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (...) -> codewords (..., dim)."""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Start the codewords at random vectors of the first batch x (n, dim) (once)."""
        if self.initialized:
            return
        rows = random_rows(x, len(self.embed))
        if rows is None:
            return
        self.embed.copy_(rows)
        self.embed_sum.copy_(self.embed)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA k-means step on the batch x (n, dim) with its assignments: codes (n,), or soft
        responsibilities (n, codebook_size) whose rows sum to 1 (`speech.codecs.prob_rvq`)."""
        x = x.float()
        onehot = F.one_hot(codes, len(self.embed)).float() if codes.dim() == 1 else codes.float()
        self.cluster_size.mul_(self.decay).add_(sum_over_ranks(onehot.sum(0)), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sum_over_ranks(onehot.T @ x), alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + len(self.embed) * self.eps) * n
        self.embed.copy_(self.embed_sum / smoothed.unsqueeze(-1))
        # The statistics are the same on every rank, so all of them agree on which codewords are dead.
        dead = self.cluster_size < self.dead_threshold
        fresh = random_rows(x, int(dead.sum())) if dead.any() else None
        if fresh is not None:
            self.embed[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0


class ResidualVQ(nn.Module):
    """``n_codebooks`` EMA codebooks applied to successive residuals.

    Args:
        dim: latent width.
        n_codebooks: depth of the residual stack.
        codebook_size: codewords per codebook.
        commitment: weight of ||z - sg(q)||^2 in the returned loss.
        quantizer_dropout: in training, the probability of keeping only a random prefix of the stack for a
            sample, so that any prefix of codebooks decodes (as in SoundStream / EnCodec).
    """

    def __init__(
        self,
        dim: int,
        n_codebooks: int,
        codebook_size: int,
        *,
        decay: float = 0.99,
        commitment: float = 0.25,
        quantizer_dropout: float = 0.5,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.commitment = commitment
        self.quantizer_dropout = quantizer_dropout
        self.codebooks = nn.ModuleList(
            EMACodebook(dim, codebook_size, decay=decay, device=device, dtype=dtype) for _ in range(n_codebooks)
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (b, dim, t) -> (quantized (b, dim, t) with straight-through gradients, codes (b, k, t), loss ())."""
        b, dim, t = z.shape
        flat = z.transpose(1, 2).reshape(-1, dim)
        residual = flat.detach()
        quantized = torch.zeros_like(flat)
        keep = torch.full((b,), len(self.codebooks), device=z.device)
        if self.training and self.quantizer_dropout > 0:
            drop = torch.rand(b, device=z.device) < self.quantizer_dropout
            keep = torch.where(drop, torch.randint(1, len(self.codebooks) + 1, (b,), device=z.device), keep)
        keep = keep.repeat_interleave(t).unsqueeze(-1)
        codes = []
        for i, codebook in enumerate(self.codebooks):
            active = keep[:, 0] > i
            if self.training:
                codebook.initialize(residual[active])
            idx = codebook.nearest(residual)
            chosen = codebook.lookup(idx).to(flat.dtype) * (keep > i)
            if self.training:
                codebook.update(residual[active], idx[active])
            quantized = quantized + chosen
            residual = residual - chosen
            codes.append(idx)
        loss = self.commitment * F.mse_loss(flat, quantized.detach())
        quantized = flat + (quantized - flat).detach()
        codes = torch.stack(codes, -1).reshape(b, t, -1).transpose(1, 2)
        return quantized.reshape(b, t, dim).transpose(1, 2), codes, loss

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """z (b, dim, t) -> codes (b, n_codebooks, t), greedy residual assignment."""
        b, dim, t = z.shape
        residual = z.transpose(1, 2).reshape(-1, dim)
        codes = []
        for codebook in self.codebooks:
            idx = codebook.nearest(residual)
            residual = residual - codebook.lookup(idx).to(residual.dtype)
            codes.append(idx)
        return torch.stack(codes, -1).reshape(b, t, -1).transpose(1, 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (b, k, t) with k <= n_codebooks -> quantized latent (b, dim, t): the sum of the k codewords."""
        return sum(self.codebooks[i].lookup(codes[:, i]) for i in range(codes.shape[1])).transpose(1, 2)
