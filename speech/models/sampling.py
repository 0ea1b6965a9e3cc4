"""Token sampling for codec language models: top-k / nucleus, and VALL-E 2's Repetition Aware Sampling.

Repetition Aware Sampling (Chen et al. 2024, arXiv:2406.05370, Algorithm 1):

    1. c ~ nucleus sampling with top-p v from p(. | x, c_<t)
    2. r = (1/K) * sum_{k=1..K} 1[c == c_{t-k}]      (the K previously generated tokens)
    3. if r > t_r: c ~ p(. | x, c_<t)                (random sampling from the full distribution)

Paper settings: K = 10, t_r = 0.1, v in [0, 0.8]. With top-p 0 the nucleus is the argmax, and the fallback is
what breaks loops. The "common" variant (FunAudioLLM/CosyVoice's ``ras_sampling``, widely copied) caps the
nucleus at ``top_k`` tokens and falls back when r >= t_r, i.e. on a single earlier occurrence at K=10, t_r=0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(kw_only=True)
class SamplingConfig:
    """How the AR decoder picks codes.

    Attributes:
        top_p: nucleus mass (0: greedy before the RAS check).
        top_k: keep at most this many tokens before the nucleus (0: no cap).
        temperature: divides the logits for both the nucleus and the fallback (1: the paper's p).
        ras: Repetition Aware Sampling on; off = plain nucleus / top-k sampling.
        ras_window: K, the number of previous tokens checked.
        ras_threshold: t_r.
        ras_variant: "paper" (r > t_r) or "common" (r >= t_r; the nucleus capped by top_k, 25 when top_k is 0).
    """

    top_p: float = 0.8
    top_k: int = 0
    temperature: float = 1.0
    ras: bool = True
    ras_window: int = 10
    ras_threshold: float = 0.1
    ras_variant: Literal["paper", "common"] = "paper"

    def __post_init__(self):
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in [0, 1]; got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0; got {self.top_k}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive; got {self.temperature}")
        if self.ras_window < 1 or not 0.0 <= self.ras_threshold <= 1.0:
            raise ValueError("ras_window must be >= 1 and ras_threshold in [0, 1]")
        if self.ras_variant not in ("paper", "common"):
            raise ValueError(f"ras_variant must be 'paper' or 'common'; got {self.ras_variant!r}")


def nucleus_sample(
    logits: torch.Tensor, *, top_p: float, top_k: int = 0, temperature: float = 1.0, generator=None
) -> torch.Tensor:
    """logits (v,) -> one token id (0-dim int64) from the smallest set of top tokens with mass >= top_p.

    The most likely token is always kept, so top_p = 0 is greedy.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(descending=True)
    keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
    keep[0] = True
    if top_k > 0:
        keep[top_k:] = False
    sorted_probs = sorted_probs * keep
    choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
    return order[choice[0]]


def full_sample(logits: torch.Tensor, *, temperature: float = 1.0, generator=None) -> torch.Tensor:
    """logits (v,) -> one token id drawn from the whole softmax."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[0]


def repetition_ratio(token: int, history: list[int], window: int) -> float:
    """r = (1/K) * number of the last K tokens of ``history`` equal to ``token``."""
    return sum(1 for t in history[-window:] if t == token) / window


def sample_token(logits: torch.Tensor, history: list[int], config: SamplingConfig, *, generator=None) -> int:
    """One code from logits (v,) given the previously generated codes, per ``config`` (RAS or plain)."""
    common = config.ras and config.ras_variant == "common"
    top_k = (config.top_k or 25) if common else config.top_k
    token = int(
        nucleus_sample(logits, top_p=config.top_p, top_k=top_k, temperature=config.temperature, generator=generator)
    )
    if not config.ras:
        return token
    ratio = repetition_ratio(token, history, config.ras_window)
    repeated = ratio >= config.ras_threshold if common else ratio > config.ras_threshold
    if repeated:
        token = int(full_sample(logits, temperature=config.temperature, generator=generator))
    return token
