"""The multi-stage patch decoder of MEGABYTE (Yu et al., 2023) and MBLM (Egli et al., 2025).

A sequence of tokens (bytes) is cut into a hierarchy of units. Stage 0 (global) runs over units of
``R_0 = P_1 * ... * P_{n-1}`` tokens; stage k over units of ``R_k = P_{k+1} * ... * P_{n-1}`` tokens, as a batch of
independent sequences of ``P_k`` units, one per unit of stage k - 1 (its *parent*); the last stage (local) runs
over single tokens, ``P_{n-1}`` per patch. ``seq_lens = (P_0, ..., P_{n-1})`` as MBLM configures them, global to
local; the context is ``P_0 * R_0`` tokens.

Stage k's input at position j is its learned start token for j = 0, else the embedding of its unit j - 1
(the unit's tokens embedded, concatenated, and projected), plus a conditioning vector from the parent. The
parent's output at its own position projects (one Linear) to ``P_k`` such vectors, one per child position.
Everything a stage sees is therefore strictly before what it predicts. Two variants place the conditioning:

- ``"megabyte"`` (the paper): position j gets child slot j of the parent's output, which has seen every unit
  before the parent. The last stage's output at position j predicts token j of its patch.
- ``"mblm"`` (MBLM, lucidrains' MEGABYTE 0.3.x): slot j is added to the embedding of unit j, i.e. at position
  j + 1; the start position gets no conditioning. The last stage also runs one more position (after its last
  token) and every output predicts the *next* token, crossing into the next patch; the first token of the
  whole sequence is predicted from the local start position alone.

Each stage is any module with the mixer protocol (`core.stack.MixerStack`: attention, Mamba, Mamba2 or Hyena
blocks). Stages k >= 1 can be run under activation checkpointing in chunks of their (large) patch batch
(MBLM's ``train_checkpoint_chunks``), which is what makes million-token training contexts fit.

Generation keeps one state per stage: the global stage's state covers the whole prefix; a lower stage's
state covers only the current parent's sequence and starts afresh with each new parent. Producing a token
therefore costs one step of the local stage, plus one step of stage k every ``R_k`` tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from longseq.core.lm import sample_next
from longseq.core.norm import LayerNorm
from longseq.core.rotary import rotate

Variant = Literal["megabyte", "mblm"]


@dataclass
class HierarchicalState:
    """Generation state of a `PatchDecoder`.

    Attributes:
        seqlen: tokens consumed so far.
        stages: per stage, its mixer state for the current parent (None until first used).
        conds: per stage k >= 1, the parent's conditioning for the current parent, (b, P_k, d_k).
        recent: (b, <= R_0 + 1) the last tokens, from which completed units are embedded.
    """

    seqlen: int = 0
    stages: list[Any] = field(default_factory=list)
    conds: list[torch.Tensor | None] = field(default_factory=list)
    recent: torch.Tensor | None = None


def rope_units(x: torch.Tensor, first_index: int = 0) -> torch.Tensor:
    """Rotate unit embeddings (..., m, d) by their index first_index + i: channels (2c, 2c + 1) turn by the angle
    i * 10000^(-2c / d), in float32 (MBLM's ``pos_emb_type="rope"``, torchtune's RoPE over the whole width)."""
    *lead, m, d = x.shape
    inv_freq = 1.0 / 10000 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    positions = torch.arange(first_index, first_index + m, device=x.device, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)  # (m, d / 2)
    flat = x.reshape(math.prod(lead), m, 1, d)
    return rotate(flat, angles.cos(), angles.sin(), interleaved=True).view(*lead, m, d)


class PatchDecoder(nn.Module):
    """The N-stage patch decoder: token ids (b, l) -> logits (b, l, vocab), where ``logits[:, t]`` is the
    prediction of token t from the tokens before it (token 0's from nothing but the start tokens).

    Args:
        stages: one module per stage, global to local, each with the mixer protocol and a ``d_model``
            attribute (e.g. `core.stack.MixerStack`); each must accept sequences of ``seq_lens[k] + 1``.
        seq_lens: units per parent at each stage, global to local (global: the maximum number of patches).
        vocab_size: number of token ids.
        variant: "megabyte" or "mblm" (module docstring).
        patch_embed_dim: width of the per-token embeddings that make up a unit of stages 0..n-2 (default: the
            local stage's width, as MBLM).
        patch_proj: units are embedded as LayerNorm -> Linear -> LayerNorm of the concatenated token
            embeddings (MBLM); without it the concatenation is the unit embedding (the MEGABYTE paper) and
            must be as wide as the stage (``R_k * patch_embed_dim == d_k``).
        split_proj: project each ``d_k / P_{k+1}`` slice of a stage output to one child with a shared Linear (the
            paper's ``W^GL``) instead of one Linear from ``d_k`` to ``P_{k+1} * d_{k+1}``.
        pos_emb: per stage, add a learned embedding of the unit index (the paper's global positions).
        pos_rope: per stage, rotate each unit embedding by its index instead (`rope_units`; MBLM's
            ``pos_emb_type="rope"``).
        checkpoint_chunks: per stage k >= 1 (n - 1 entries): when training, run the stage under activation
            checkpointing in this many chunks of its patch batch (0: no checkpointing).
        empty_start_context: variant "mblm", generation from an empty prompt: condition each child start token
            on its parent's start output (MBLM's and MEGABYTE-pytorch's ``forward_empty``) instead of predicting
            the first token from the local start token alone, as training (and their loss) does.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        *,
        seq_lens: Sequence[int],
        vocab_size: int = 256,
        variant: Variant = "mblm",
        patch_embed_dim: int | None = None,
        patch_proj: bool = True,
        split_proj: bool = False,
        pos_emb: Sequence[bool] | None = None,
        pos_rope: Sequence[bool] | None = None,
        checkpoint_chunks: Sequence[int] | None = None,
        empty_start_context: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        n = len(stages)
        if n < 1 or len(seq_lens) != n:
            raise ValueError(f"need one seq_len per stage; got {len(seq_lens)} for {n} stages")
        if any(p < 1 for p in seq_lens):
            raise ValueError(f"seq_lens must be positive, got {list(seq_lens)}")
        if variant not in ("megabyte", "mblm"):
            raise ValueError(f"unknown variant {variant!r}; expected 'megabyte' or 'mblm'")
        pos_emb = [False] * n if pos_emb is None else list(pos_emb)
        self.pos_rope = [False] * n if pos_rope is None else [bool(rope) for rope in pos_rope]
        chunks = [0] * (n - 1) if checkpoint_chunks is None else list(checkpoint_chunks)
        if len(pos_emb) != n or len(self.pos_rope) != n or len(chunks) != n - 1 or any(c < 0 for c in chunks):
            raise ValueError(
                "need one pos_emb and pos_rope per stage and one checkpoint_chunks (>= 0) per stage after the first"
            )
        dims = [stage.d_model for stage in stages]
        if any(rope and d % 2 for rope, d in zip(self.pos_rope, dims)):
            raise ValueError(f"pos_rope rotates pairs of channels: the stage widths must be even, got {dims}")
        self.seq_lens = [int(p) for p in seq_lens]
        self.unit_sizes = [math.prod(self.seq_lens[k + 1 :]) for k in range(n)]  # R_k
        self.context = self.seq_lens[0] * self.unit_sizes[0]
        self.vocab_size = vocab_size
        self.variant = variant
        self.checkpoint_chunks = [0, *chunks]
        self.empty_start_context = empty_start_context
        patch_embed_dim = dims[-1] if patch_embed_dim is None else patch_embed_dim

        self.stages = nn.ModuleList(stages)
        self.start_tokens = nn.ParameterList(nn.Parameter(torch.randn(d, **dd)) for d in dims)
        self.embeds = nn.ModuleList(
            nn.Embedding(vocab_size, dims[k] if k == n - 1 else patch_embed_dim, **dd) for k in range(n)
        )
        self.patch_projs = nn.ModuleList()
        for k in range(n - 1):
            width = self.unit_sizes[k] * patch_embed_dim
            if patch_proj:
                proj = nn.Sequential(LayerNorm(width, **dd), nn.Linear(width, dims[k], **dd), LayerNorm(dims[k], **dd))
            elif width == dims[k]:
                proj = nn.Identity()
            else:
                raise ValueError(
                    f"without patch_proj, stage {k} width {dims[k]} must equal unit size {self.unit_sizes[k]} x "
                    f"patch_embed_dim {patch_embed_dim}"
                )
            self.patch_projs.append(proj)
        self.pos_embs = nn.ModuleList(
            nn.Embedding(self.seq_lens[k], dims[k], **dd) if pos_emb[k] else nn.Identity() for k in range(n)
        )
        self.split_proj = split_proj
        self.to_next = nn.ModuleList()
        for k in range(n - 1):
            children = self.seq_lens[k + 1]
            if split_proj:
                if dims[k] % children:
                    raise ValueError(f"split_proj: stage {k} width {dims[k]} is not divisible by {children} children")
                self.to_next.append(nn.Linear(dims[k] // children, dims[k + 1], **dd))
            else:
                self.to_next.append(nn.Linear(dims[k], children * dims[k + 1], **dd))
        self.head = nn.Linear(dims[-1], vocab_size, **dd)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def _embed_units(self, k: int, units: torch.Tensor, first_index: int = 0) -> torch.Tensor:
        """Token ids of whole units (..., m, R_k) -> unit embeddings (..., m, d_k), with positions from first_index."""
        x = self.embeds[k](units)  # (..., m, R_k, e)
        x = x.squeeze(-2) if k == self.num_stages - 1 else self.patch_projs[k](x.flatten(-2))
        if isinstance(self.pos_embs[k], nn.Embedding):
            positions = torch.arange(first_index, first_index + units.shape[-2], device=units.device)
            x = x + self.pos_embs[k](positions)
        if self.pos_rope[k]:
            x = rope_units(x, first_index)
        return x

    def _project(self, k: int, out: torch.Tensor) -> torch.Tensor:
        """Stage k outputs (..., d_k) -> conditioning of their children (..., P_{k+1}, d_{k+1})."""
        children = self.seq_lens[k + 1]
        if self.split_proj:
            return self.to_next[k](out.unflatten(-1, (children, -1)))
        return self.to_next[k](out).unflatten(-1, (children, -1))

    def _stage_inputs(self, k: int, units: torch.Tensor, cond: torch.Tensor | None, length: int) -> torch.Tensor:
        """The first ``length`` input positions of stage k's sequences.

        Args:
            units: (B, >= length - 1, R_k) token ids; position j reads unit j - 1.
            cond: (B, P_k, d_k) the parents' conditioning, or None at stage 0.

        Returns:
            (B, length, d_k).
        """
        x = self._embed_units(k, units[:, : length - 1])
        start = self.start_tokens[k].to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat((start, x), dim=1)
        if cond is not None:
            if self.variant == "mblm":
                cond = F.pad(cond, (0, 0, 1, 0))  # slot j goes with unit j, at position j + 1
            x = x + cond[:, :length]
        return x

    def _run_stage(self, k: int, x: torch.Tensor) -> torch.Tensor:
        chunks = self.checkpoint_chunks[k]
        stage = self.stages[k]
        if not (chunks and self.training and torch.is_grad_enabled()):
            return stage(x)
        return torch.cat([checkpoint(stage, part, use_reentrant=False) for part in x.chunk(chunks)], dim=0)

    def forward(self, ids: torch.Tensor, *, next_token: bool = False) -> torch.Tensor:
        """Token ids (b, l) -> logits (b, l, vocab); logits[:, t] predict token t from tokens < t.

        With ``next_token`` (variant "mblm" only) logits[:, t] predict token t + 1 from tokens <= t instead, as
        MBLM and MEGABYTE-pytorch return them: the "mblm" local stage computes that prediction anyway, so l may
        be the whole context.

        The input is padded to whole global units (with id 0); padding only ever follows the real tokens, so it
        cannot change their logits, and it is cut off again.
        """
        b, l = ids.shape
        if l == 0:
            raise ValueError("empty input: nothing to predict")
        if next_token and self.variant != "mblm":
            raise ValueError('next_token logits are an output of the "mblm" variant')
        if l > self.context:
            raise ValueError(f"input of {l} tokens exceeds the context of {self.context}")
        r0 = self.unit_sizes[0]
        padded = F.pad(ids, (0, -l % r0))
        n = self.num_stages
        cond = None
        out = None
        for k in range(n):
            units = padded.view(b, -1, r0) if k == 0 else padded.view(-1, self.seq_lens[k], self.unit_sizes[k])
            length = units.shape[1] + (1 if k == n - 1 and self.variant == "mblm" else 0)
            out = self._run_stage(k, self._stage_inputs(k, units, cond, length))
            if k < n - 1:
                cond = self._project(k, out).flatten(0, 1)  # (B_k * P_k, P_{k+1}, d_{k+1})
        if self.variant == "megabyte":
            return self.head(out).view(b, -1, self.vocab_size)[:, :l]
        first = self.head(out.view(b, -1, *out.shape[1:])[:, 0, :1])  # the very first start position
        rest = self.head(out[:, 1:]).view(b, -1, self.vocab_size)
        if next_token:
            return rest[:, :l]
        return torch.cat((first, rest[:, : l - 1]), dim=1)

    def init_state(self) -> HierarchicalState:
        """An empty generation state for `prefill`; the stage states are allocated as the prompt's batch needs."""
        n = self.num_stages
        return HierarchicalState(stages=[None] * n, conds=[None] * n)

    def _fresh_stage(self, k: int, batch_size: int, device, dtype) -> Any:
        return self.stages[k].init_state(batch_size, max_seqlen=self.seq_lens[k] + 1, device=device, dtype=dtype)

    def _advance_upper(self, state: HierarchicalState, ids: torch.Tensor, s: int) -> None:
        """Bring stages 0..n-2 to the units containing token s, given the tokens before s.

        Args:
            ids: (b, >= R_0) the most recent tokens, ending just before token s.
        """
        b = ids.shape[0]
        for k in range(self.num_stages - 1):
            r = self.unit_sizes[k]
            if s % r:
                continue  # token s is inside a unit whose stage-k output is already known
            j = s // r if k == 0 else (s // r) % self.seq_lens[k]
            if j == 0:  # a new parent (at stage 0: the very first position)
                state.stages[k] = self._fresh_stage(k, b, ids.device, self.head.weight.dtype)
            x = self.start_tokens[k].expand(b, -1) if j == 0 else self._embed_units(k, ids[:, None, -r:], j - 1)[:, 0]
            cond = state.conds[k]
            if cond is not None:
                slot = j if self.variant == "megabyte" else j - 1
                if slot >= 0:
                    x = x + cond[:, slot]
            out = self.stages[k].step(x, state.stages[k])
            state.conds[k + 1] = self._project(k, out)

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, state: HierarchicalState) -> torch.Tensor:
        """Consume a prompt (b, l) into a fresh state (l may be 0); return the logits of the next token (b, vocab).

        Each stage runs only the positions the next token depends on: the global stage over the whole prefix,
        a lower stage over its current parent's sequence so far.
        """
        if state.seqlen:
            raise ValueError("prefill needs a fresh state")
        b, l = ids.shape
        if l >= self.context:
            raise ValueError(f"a prompt of {l} tokens leaves no room in the context of {self.context}")
        n = self.num_stages
        device, dtype = ids.device, self.head.weight.dtype
        state.recent = ids[:, -(self.unit_sizes[0] + 1) :]
        state.seqlen = l
        if self.variant == "mblm" and l == 0:
            # Token 0 is predicted by the local start position alone, as in training; with empty_start_context
            # every stage runs its start token, each conditioned on its parent's (the packages' `forward_empty`).
            # The step for token 0 starts every stage afresh, so no stage state is kept here.
            cond = None
            for k in range(0 if self.empty_start_context else n - 1, n):
                x = self.start_tokens[k].expand(b, 1, -1)
                out = self.stages[k](x if cond is None else x + cond[:, :1])[:, -1]
                if k < n - 1:
                    cond = self._project(k, out)
            return self.head(out)
        # MEGABYTE predicts token l at its own position; MBLM predicts it from the position of token l - 1.
        s = l if self.variant == "megabyte" else l - 1
        cond = None
        for k in range(n):
            r = self.unit_sizes[k]
            first = 0 if k == 0 else s // (r * self.seq_lens[k]) * (r * self.seq_lens[k])  # parent's first token
            j = (s - first) // r  # position of token s's unit in this stage's sequence
            if k < n - 1 or self.variant == "megabyte":
                length = j + 1
            else:
                length = j + 2  # MBLM's local stage also reads token s itself
            units = ids[:, first : first + (length - 1) * r].reshape(b, length - 1, r)
            state.stages[k] = self._fresh_stage(k, b, device, dtype)
            state.conds[k] = cond
            out = self.stages[k](self._stage_inputs(k, units, cond, length), state.stages[k])[:, -1]
            if k < n - 1:
                cond = self._project(k, out)
        return self.head(out)

    @torch.no_grad()
    def step(self, token: torch.Tensor, state: HierarchicalState) -> torch.Tensor:
        """Consume one token (b,); return the logits of the next token (b, vocab)."""
        t = state.seqlen  # position of the incoming token
        if t + 1 >= self.context:
            raise ValueError(f"the context of {self.context} tokens is full")
        recent = token[:, None] if state.recent is None else torch.cat((state.recent, token[:, None]), dim=1)
        state.recent = recent[:, -(self.unit_sizes[0] + 1) :]
        state.seqlen = t + 1
        n = self.num_stages
        b = token.shape[0]
        device, dtype = token.device, self.head.weight.dtype
        last = n - 1
        if self.variant == "megabyte":
            self._advance_upper(state, state.recent, t + 1)
            j = (t + 1) % self.seq_lens[last]
            if j == 0:
                state.stages[last] = self._fresh_stage(last, b, device, dtype)
                x = self.start_tokens[last].expand(b, -1)
            else:
                x = self._embed_units(last, token[:, None, None], j - 1)[:, 0]
            cond = state.conds[last]
            if cond is not None:
                x = x + cond[:, j]
        else:
            self._advance_upper(state, state.recent[:, :-1], t)
            j = t % self.seq_lens[last]
            if j == 0:
                state.stages[last] = self._fresh_stage(last, b, device, dtype)
                self.stages[last].step(self.start_tokens[last].expand(b, -1), state.stages[last])
            x = self._embed_units(last, token[:, None, None], j)[:, 0]
            cond = state.conds[last]
            if cond is not None:
                x = x + cond[:, j]
        return self.head(self.stages[last].step(x, state.stages[last]))

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        *,
        use_cache: bool = True,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        callback: Callable[[torch.Tensor], None] | None = None,
        num_choices: int | None = None,
    ) -> torch.Tensor:
        """Continue a prompt (b, l) by ``max_new_tokens`` tokens: returns (b, l + max_new_tokens).

        With ``use_cache`` each token costs a step of the per-stage states (`prefill`, `step`); without, the
        whole forward is recomputed for every token (the reference the cached path is tested against).
        ``callback`` receives each new token (b,) as it is chosen. Sampling (`core.lm.sample_next`): greedy unless
        ``do_sample``, then temperature, top-k (0 = off) and nucleus top-p (1 = off). ``num_choices`` limits the
        choice to ids below it (bytes from a vocabulary with a pad id).
        """
        b, l = prompt.shape
        if l + max_new_tokens > self.context:
            raise ValueError(f"{l} prompt + {max_new_tokens} new tokens exceed the context of {self.context}")
        if temperature <= 0 or top_k < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature > 0, top_k >= 0, 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}")
        options = {"do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p}
        tokens = [prompt]
        state = self.init_state() if use_cache else None
        for i in range(max_new_tokens):
            if state is None and l + i == 0:
                logits = self.prefill(prompt, self.init_state())  # an empty prompt has its own path
            elif state is None:
                # logits[:, t] depend only on tokens < t, so a placeholder at t yields the next-token logits
                seq = torch.cat((*tokens, prompt.new_zeros(b, 1)), dim=1)
                logits = self(seq)[:, -1]
            elif i == 0:
                logits = self.prefill(prompt, state)
            else:
                logits = self.step(tokens[-1][:, -1], state)
            token = sample_next(logits[:, :num_choices], generator=generator, **options)
            tokens.append(token[:, None])
            if callback is not None:
                callback(token)
        return torch.cat(tokens, dim=1)
