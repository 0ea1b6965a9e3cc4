"""Probabilistic residual vector quantization (CLaM-TTS, Kim et al. 2024, arXiv:2404.02781).

The codec's likelihood of a latent z given its codes c_1..D is a Gaussian around the sum of the codewords:

    p(z | c) = N(z; sum_d e_d(c_d), sigma^2 I)

Codes are chosen greedily, as in plain residual VQ (c*). The posterior over the codes is mean-field,
q(c | z) = prod_d q(c_d | z), each depth's factor taken with the other depths held at their greedy codes:

    q(c_d = j | z) = softmax_j(-||r_d - e_d(j)||^2 / (2 sigma^2)),   r_d = z - sum_{k != d} e_k(c*_k)

Training maximises E_q[log p(z | c)] over the codebooks. For a fixed q the best codeword j of depth d is the
q-weighted mean of the r_d; the codebooks follow it by exponential moving averages (online EM), so every
codeword moves by its responsibility instead of only the nearest one moving (the paper's remedy for codebook
collapse). As sigma -> 0 the responsibilities become one-hot and this is the EMA k-means of plain RVQ.
sigma^2 is the maximum-likelihood variance of the Gaussian, mean(||z - q*||^2) / dim, estimated on each batch
(and followed by EMA for the language model); under data parallelism it is the variance of the whole batch,
over every rank, like the codebook statistics (`speech.codecs.rvq`).
The encoder is pulled towards the greedy reconstruction q* (commitment) and the decoder receives q* with
straight-through gradients.

The latent language model (`speech.models.clam_tts`) predicts z with Gaussians of the same sigma^2 and turns a
sampled z into all D codes at once with `encode` (greedy residual quantization).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.speech.codecs.rvq import ResidualVQ, sum_over_ranks


class ProbabilisticRVQ(ResidualVQ):
    """``n_codebooks`` codebooks learned under the mean-field posterior above; ``variance`` holds sigma^2.

    Args:
        dim: latent width.
        n_codebooks: depth D of the residual stack.
        codebook_size: codewords per depth.
        decay: EMA decay of the codebook statistics and of sigma^2.
        commitment: weight of ||z - sg(q*)||^2 in the returned loss.
    """

    def __init__(
        self,
        dim: int,
        n_codebooks: int,
        codebook_size: int,
        *,
        decay: float = 0.99,
        commitment: float = 0.25,
        device=None,
        dtype=None,
    ):
        super().__init__(
            dim,
            n_codebooks,
            codebook_size,
            decay=decay,
            commitment=commitment,
            quantizer_dropout=0.0,
            device=device,
            dtype=dtype,
        )
        self.decay = decay
        self.register_buffer("variance", torch.ones((), device=device))
        self.register_buffer("variance_initialized", torch.zeros((), dtype=torch.bool, device=device))

    def greedy(self, x: torch.Tensor, *, initialize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """x (n, dim) -> greedy codes (n, D) and the quantized vectors q* (n, dim); ``initialize`` starts empty
        codebooks from the residuals they see (first training batch)."""
        residual = x
        codes = []
        for codebook in self.codebooks:
            if initialize:
                codebook.initialize(residual)
            idx = codebook.nearest(residual)
            residual = residual - codebook.lookup(idx).to(residual.dtype)
            codes.append(idx)
        return torch.stack(codes, -1), x - residual

    def posterior(
        self, x: torch.Tensor, codes: torch.Tensor, variance: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean-field posterior of every depth given the greedy codes.

        Args:
            x: latents (n, dim); codes: their greedy codes (n, D).
            variance: sigma^2 (default: the codec's, ``self.variance``).

        Returns:
            q (n, D, codebook_size), rows summing to 1, and the residuals r_d (n, D, dim) each depth explains.
        """
        variance = self.variance if variance is None else variance
        chosen = torch.stack([cb.lookup(codes[:, d]).float() for d, cb in enumerate(self.codebooks)], 1)
        residuals = x.float()[:, None] - chosen.sum(1, keepdim=True) + chosen
        distances = torch.stack([cb.distances(residuals[:, d]) for d, cb in enumerate(self.codebooks)], 1)
        return torch.softmax(-distances / (2 * variance), dim=-1), residuals

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor, quantized: torch.Tensor) -> None:
        """One online-EM step on a batch x (n, dim) with its greedy codes (n, D) and reconstruction q* (n, dim).

        The E-step uses the batch's own maximum-likelihood sigma^2 (its mean squared greedy error): a lagging
        estimate from earlier, worse codebooks would make the posterior too flat, and a flat posterior pulls
        every codeword to the mean (measured: codebooks collapse). ``variance`` follows it by EMA, for the
        language model.
        """
        squared = (x.float() - quantized.float()).pow(2)
        total, count = sum_over_ranks(torch.stack([squared.sum(), squared.new_tensor(squared.numel())]))
        error = (total / count).clamp_min(1e-8)
        q, residuals = self.posterior(x, codes, error)
        for d, codebook in enumerate(self.codebooks):
            codebook.update(residuals[:, d], q[:, d])
        if not self.variance_initialized:
            self.variance.copy_(error)
            self.variance_initialized.fill_(True)
        self.variance.mul_(self.decay).add_(error, alpha=1 - self.decay)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (b, dim, t) -> (quantized (b, dim, t) with straight-through gradients, codes (b, D, t), loss ())."""
        b, dim, t = z.shape
        flat = z.transpose(1, 2).reshape(-1, dim)
        codes, quantized = self.greedy(flat.detach(), initialize=self.training)
        if self.training:
            self.update(flat.detach(), codes, quantized)
        loss = self.commitment * F.mse_loss(flat, quantized.detach())
        quantized = flat + (quantized - flat).detach()
        return quantized.reshape(b, t, dim).transpose(1, 2), codes.reshape(b, t, -1).transpose(1, 2), loss

    def codebook_tensor(self) -> torch.Tensor:
        """All codewords (D, codebook_size, dim)."""
        return torch.stack([cb.embed for cb in self.codebooks])
