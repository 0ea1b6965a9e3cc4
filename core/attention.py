"""Multi-head self-attention: causal, bidirectional or sliding-window; grouped KV heads; rotary; a KV cache.

Parameter names follow mamba_ssm's `MHA` (the attention layers of its hybrid Mamba models): ``in_proj``
makes [q (h * p); k (h_kv * p); v (h_kv * p)] in one matmul and ``out_proj`` maps (h * p) back to d. With
``num_heads_kv == num_heads`` the rows of ``in_proj`` are laid out as torch's ``nn.MultiheadAttention``
``in_proj_weight`` (q; k; v), so those checkpoints load by renaming.

Two attention paths compute the same function: `sdpa_attention` (torch's fused
``scaled_dot_product_attention``, the fast path) and `manual_attention` (the masked softmax written out,
the readable reference). Tests pin them together, outputs and gradients.

Masks: query i may attend key j when j <= i (causal), |i - j| < window (sliding window, ``window`` keys
including the token itself on the causal side), the key is not padding, and an optional user mask allows it.
A query with no allowed key (e.g. a left-padding position) outputs zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.rotary import RotaryEmbedding

Backend = Literal["sdpa", "manual"]


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, for one attention layer.

    With a sliding window the buffers hold only the last ``window`` tokens (a ring buffer: the token at
    absolute position t sits in slot t % window), so memory stays constant however long the sequence grows.
    Without one, the buffers grow by doubling (or are allocated once when ``max_seqlen`` is known).

    Attributes:
        k, v: (b, h_kv, capacity, p).
        seqlen: number of tokens seen so far, i.e. the absolute position of the next token.
        window: the sliding window, or None.
    """

    k: torch.Tensor
    v: torch.Tensor
    seqlen: int = 0
    window: int | None = None

    def _ensure_capacity(self, length: int) -> None:
        capacity = self.k.shape[2]
        if length <= capacity:
            return
        size = max(length, 2 * capacity)
        grow = (0, 0, 0, size - capacity)
        self.k = F.pad(self.k, grow)
        self.v = F.pad(self.v, grow)

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Append new keys and values; return everything a query of the new tokens may need.

        Args:
            k, v: (b, h_kv, l, p) for positions seqlen .. seqlen + l - 1.

        Returns:
            keys, values (b, h_kv, m, p) for the m most recent positions, and the first of those positions.
            The keys are in position order, except after a one-token update of a sliding-window cache, where
            they are in slot order (every one of them is then inside the window, and attention is
            invariant to the order of its keys).
        """
        start, length = self.seqlen, k.shape[2]
        end = start + length
        self.seqlen = end
        if self.window is None:
            self._ensure_capacity(end)
            self.k[:, :, start:end] = k
            self.v[:, :, start:end] = v
            return self.k[:, :, :end], self.v[:, :, :end], 0
        window = self.window
        if length == 1:
            self.k[:, :, start % window] = k[:, :, 0]
            self.v[:, :, start % window] = v[:, :, 0]
            kept = min(end, window)
            return self.k[:, :, :kept], self.v[:, :, :kept], end - kept
        kept = min(start, window)
        order = torch.arange(start - kept, start, device=k.device) % window
        keys = torch.cat((self.k[:, :, order], k), dim=2)
        values = torch.cat((self.v[:, :, order], v), dim=2)
        last = torch.arange(max(start - kept, end - window), end, device=k.device) % window
        self.k[:, :, last] = keys[:, :, -window:]
        self.v[:, :, last] = values[:, :, -window:]
        return keys, values, start - kept


def build_mask(
    q_start: int,
    l_q: int,
    k_start: int,
    l_k: int,
    *,
    causal: bool,
    window: int | None,
    device=None,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The boolean mask (True = may attend) for queries at positions q_start.. and keys at k_start...

    Args:
        q_start, l_q: first position and number of queries; k_start, l_k: the same for keys.
        key_padding_mask: (b, l_k), True for real tokens.
        attn_mask: bool, broadcastable to (b, h, l_q, l_k), True = may attend.

    Returns:
        None when every query may attend every key, else a bool tensor broadcastable to (b, h, l_q, l_k).
    """
    q_end, k_end = q_start + l_q - 1, k_start + l_k - 1
    if causal:
        trivial = k_end <= q_start and (window is None or q_end - k_start < window)
    else:
        trivial = window is None or max(q_end - k_start, k_end - q_start) < window
    mask = None
    if not trivial:
        q_pos = torch.arange(q_start, q_start + l_q, device=device)
        k_pos = torch.arange(k_start, k_start + l_k, device=device)
        distance = q_pos[:, None] - k_pos[None, :]  # (l_q, l_k)
        if causal:
            mask = (distance >= 0) if window is None else (distance >= 0) & (distance < window)
        else:
            mask = distance.abs() < window
    if key_padding_mask is not None:
        keep = key_padding_mask[:, None, None, :].bool()
        mask = keep if mask is None else mask & keep
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            raise ValueError(f"attn_mask must be boolean (True = may attend), got {attn_mask.dtype}")
        mask = attn_mask if mask is None else mask & attn_mask
    return mask


def manual_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    scale: float,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """The reference: softmax(q k^T * scale + mask) v in float32 (or float64 for float64 inputs), with the KV
    heads expanded explicitly.

    Args:
        q: (b, h, l_q, p); k, v: (b, h_kv, l_k, p) with h a multiple of h_kv (query head i reads KV head
            i // (h / h_kv)).
        mask: bool broadcastable to (b, h, l_q, l_k), True = may attend; every query must allow one key.

    Returns:
        (b, h, l_q, p) in q's dtype.
    """
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    v = v.repeat_interleave(groups, dim=1)
    compute = torch.promote_types(q.dtype, torch.float32)
    scores = torch.einsum("bhqp,bhkp->bhqk", q.to(compute), k.to(compute)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(dim=-1)
    probs = F.dropout(probs, p=dropout_p, training=dropout_p > 0)
    return torch.einsum("bhqk,bhkp->bhqp", probs, v.to(compute)).to(q.dtype)


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    scale: float,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> torch.Tensor:
    """The fast path: torch's fused attention. Same arguments and result as `manual_attention`; with
    ``is_causal`` (and no mask) the causal mask is implied, which lets torch pick its flash kernels."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, enable_gqa=True
    )


class Attention(nn.Module):
    """Multi-head self-attention following the mixer protocol of `core.block`.

    Args:
        d_model: input and output width d.
        num_heads: query heads h.
        num_heads_kv: key/value heads (h for MHA, 1 for MQA, a divisor of h for GQA); default h.
        head_dim: p; default d / h.
        causal: causal (decoder) or bidirectional attention.
        window: sliding window: each query sees at most ``window`` keys on each side, itself included
            (causal: the ``window`` most recent tokens). None attends to everything allowed.
        qkv_proj_bias, out_proj_bias: biases of the projections.
        softmax_scale: default p^-0.5.
        rotary_emb_dim: rotate the first rotary_emb_dim features of q and k per head (0: no rotary).
        rotary_emb_base, rotary_emb_interleaved: see `core.rotary.RotaryEmbedding`.
        dropout: dropout on the attention probabilities (training only).
        backend: "sdpa" (fast) or "manual" (reference); both compute the same function.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        num_heads_kv: int | None = None,
        head_dim: int | None = None,
        causal: bool = True,
        window: int | None = None,
        qkv_proj_bias: bool = True,
        out_proj_bias: bool = True,
        softmax_scale: float | None = None,
        rotary_emb_dim: int = 0,
        rotary_emb_base: float = 10000.0,
        rotary_emb_interleaved: bool = False,
        dropout: float = 0.0,
        backend: Backend = "sdpa",
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        num_heads_kv = num_heads if num_heads_kv is None else num_heads_kv
        if num_heads <= 0 or num_heads_kv <= 0 or num_heads % num_heads_kv:
            raise ValueError(f"num_heads ({num_heads}) must be a positive multiple of num_heads_kv ({num_heads_kv})")
        if head_dim is None:
            if d_model % num_heads:
                raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
            head_dim = d_model // num_heads
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if rotary_emb_dim > head_dim:
            raise ValueError(f"rotary_emb_dim ({rotary_emb_dim}) exceeds head_dim ({head_dim})")
        if backend not in ("sdpa", "manual"):
            raise ValueError(f"unknown attention backend {backend!r}; expected 'sdpa' or 'manual'")
        self.d_model = d_model
        self.num_heads = num_heads
        self.num_heads_kv = num_heads_kv
        self.head_dim = head_dim
        self.causal = causal
        self.window = window
        self.softmax_scale = head_dim**-0.5 if softmax_scale is None else softmax_scale
        self.dropout = dropout
        self.backend = backend
        self.rotary = (
            RotaryEmbedding(rotary_emb_dim, base=rotary_emb_base, interleaved=rotary_emb_interleaved, device=device)
            if rotary_emb_dim > 0
            else None
        )
        self.in_proj = nn.Linear(d_model, head_dim * (num_heads + 2 * num_heads_kv), bias=qkv_proj_bias, **dd)
        self.out_proj = nn.Linear(head_dim * num_heads, d_model, bias=out_proj_bias, **dd)

    def init_state(self, batch_size: int, *, max_seqlen: int | None = None, device=None, dtype=None) -> KVCache:
        """An empty KV cache: ``window`` slots with a sliding window, else ``max_seqlen`` (or a small buffer
        that grows)."""
        device = self.out_proj.weight.device if device is None else device
        dtype = self.out_proj.weight.dtype if dtype is None else dtype
        if self.window is not None:
            capacity = self.window
        else:
            capacity = max_seqlen if max_seqlen is not None else 64
        shape = (batch_size, self.num_heads_kv, capacity, self.head_dim)
        k = torch.zeros(shape, device=device, dtype=dtype)
        return KVCache(k=k, v=torch.zeros_like(k), window=self.window)

    def forward(
        self,
        x: torch.Tensor,
        state: KVCache | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend over x, continuing from (and appending to) ``state`` when given.

        Args:
            x: (b, l, d).
            state: a `KVCache` from `init_state`; the l tokens follow the ones already in it.
            key_padding_mask: (b, l) bool, True for real tokens (only without a state).
            attn_mask: bool broadcastable to (b, h, l, l_k), True = may attend, where l_k = l without a state
                and the number of cached tokens plus l with one (not with a sliding-window state).

        Returns:
            (b, l, d).
        """
        b, l, _ = x.shape
        h, hkv, p = self.num_heads, self.num_heads_kv, self.head_dim
        q, k, v = self.in_proj(x).split([h * p, hkv * p, hkv * p], dim=-1)
        q, k, v = q.view(b, l, h, p), k.view(b, l, hkv, p), v.view(b, l, hkv, p)
        offset = 0 if state is None else state.seqlen
        if self.rotary is not None:
            q, k = self.rotary(q, k, offset=offset)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (b, heads, l, p)
        if state is None:
            k_start, l_k = 0, l
        else:
            if key_padding_mask is not None:
                raise ValueError("key_padding_mask is not supported with a KV cache")
            if attn_mask is not None and state.window is not None:
                raise ValueError("attn_mask is not supported with a sliding-window KV cache")
            k, v, k_start = state.update(k, v)
            l_k = k.shape[2]
        # A plain causal pass needs no mask tensor: SDPA's is_causal implies it (and allows flash kernels).
        implied_causal = (
            state is None and self.causal and self.window is None and key_padding_mask is None and attn_mask is None
        )
        mask = None
        if not implied_causal:
            mask = build_mask(
                offset,
                l,
                k_start,
                l_k,
                causal=self.causal,
                window=self.window,
                device=x.device,
                key_padding_mask=key_padding_mask,
                attn_mask=attn_mask,
            )
        out = self._attend(q, k, v, mask, implied_causal=implied_causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, l, h * p))

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, implied_causal: bool
    ) -> torch.Tensor:
        dropout_p = self.dropout if self.training else 0.0
        empty = None
        if mask is not None:
            # A query that may attend nothing (left padding) gets an arbitrary key, then a zero output, so that
            # neither path produces NaN (nor NaN gradients).
            empty = ~mask.any(dim=-1, keepdim=True)
            mask = mask | empty
        if self.backend == "manual":
            if implied_causal:
                mask = build_mask(0, q.shape[2], 0, k.shape[2], causal=True, window=None, device=q.device)
            out = manual_attention(q, k, v, mask, scale=self.softmax_scale, dropout_p=dropout_p)
        else:
            out = sdpa_attention(q, k, v, mask, scale=self.softmax_scale, dropout_p=dropout_p, is_causal=implied_causal)
        if empty is not None:
            out = out.masked_fill(empty, 0.0)
        return out

    def step(self, x: torch.Tensor, state: KVCache) -> torch.Tensor:
        """One token: x (b, d) -> (b, d); the token is appended to ``state``."""
        return self.forward(x.unsqueeze(1), state).squeeze(1)
