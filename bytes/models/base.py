"""What MEGABYTE and MBLM share: a `core.hierarchical.PatchDecoder` over bytes, next-token logits, scoring in
bits per byte, generation, our checkpoint format (the `Pretrained` mixin) and the registry's example input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.hierarchical import PatchDecoder
from longseq.core.registry import Pretrained


class ByteLM(Pretrained, nn.Module):
    """A byte-level language model on a patch decoder. Subclasses build ``self.decoder`` from their config."""

    model_type: ClassVar[str]
    config: Any
    decoder: PatchDecoder

    @property
    def context(self) -> int:
        """The most bytes the model sees at once (a prompt plus its continuation fit in it)."""
        return self.decoder.context

    def _check_ids(self, ids: torch.Tensor, limit: int) -> None:
        if ids.ndim != 2 or ids.is_floating_point():
            raise ValueError(f"byte ids must be a (b, l) integer tensor, got {tuple(ids.shape)} {ids.dtype}")
        if ids.shape[1] > limit:
            raise ValueError(f"{ids.shape[1]} bytes exceed the {limit} this model takes (context {self.context})")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.decoder.vocab_size):
            raise ValueError(f"byte ids must lie in [0, {self.decoder.vocab_size})")

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Byte ids (b, l) -> next-byte logits (b, l, vocab): ``logits[:, t]`` predicts byte t + 1 from bytes <= t.

        ``l`` is at most ``context - 1`` for MEGABYTE (the prediction after the last byte needs one more
        position), the whole context for MBLM (its local stage runs one position past its last byte).
        """
        if self.decoder.variant == "mblm":
            self._check_ids(ids, self.context)
            return self.decoder(ids, next_token=True)
        self._check_ids(ids, self.context - 1)
        # The decoder's logits at position t predict byte t from bytes < t, so one placeholder byte at the end
        # yields the prediction that follows the input (and cannot influence anything before it).
        return self.decoder(F.pad(ids, (0, 1)))[:, 1:]

    def byte_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Byte ids (b, l) -> logits (b, l, vocab) where ``logits[:, t]`` predicts byte t from bytes < t (byte 0
        from nothing); ``l`` up to the context. What scoring a file needs: every byte gets a prediction."""
        self._check_ids(ids, self.context)
        return self.decoder(ids)

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean next-byte cross-entropy (nats) of byte ids (b, l), l up to the context: every byte is predicted
        from those before it (byte 0 from nothing), and targets equal to the config's ``pad_id`` are left out
        (the ``ignore_index`` of mblm and MEGABYTE-pytorch, whose losses this reproduces)."""
        logits = self.byte_logits(ids)
        pad = getattr(self.config, "pad_id", None)
        ignore = -100 if pad is None else pad  # -100: cross_entropy's default, no byte id
        logits = logits.flatten(0, 1).to(torch.promote_types(logits.dtype, torch.float32))
        return F.cross_entropy(logits, ids.flatten(), ignore_index=ignore)

    def position_bits(self, ids: torch.Tensor) -> torch.Tensor:
        """Code length of every byte in bits, -log2 p(byte t | bytes < t): byte ids (b, l) -> (b, l)."""
        logits = self.byte_logits(ids)
        nats = F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten(), reduction="none")
        return nats.view(ids.shape) / math.log(2)

    def bits(self, ids: torch.Tensor) -> torch.Tensor:
        """Total code length of each sequence in bits: -sum_t log2 p(byte t | bytes < t), shape (b,)."""
        return self.position_bits(ids).sum(dim=1)

    @torch.no_grad()
    def bits_per_byte(
        self,
        data: torch.Tensor,
        *,
        batch_size: int = 8,
        window: int | None = None,
        stride: int | None = None,
        progress: bool = False,
    ) -> float:
        """Bits per byte of a byte stream (n,), scored in windows of ``window`` bytes (default: the context) that
        start every ``stride`` bytes (default: the window).

        Each window scores the bytes no earlier window scored. By default the windows lie side by side and each
        starts without history: the model as a compressor that restarts every ``window`` bytes. A smaller stride
        gives every byte after the first window at least ``window - stride`` bytes of history (a sliding history,
        as gzip and xz keep) for ``window / stride`` times the compute. A window shorter than the context suits a
        model trained on shorter sequences than its context.
        """
        if data.ndim != 1 or data.numel() == 0:
            raise ValueError(f"need a non-empty byte stream (n,), got shape {tuple(data.shape)}")
        n = data.numel()
        window = self.context if window is None else window
        stride = window if stride is None else stride
        if not 0 < window <= self.context:
            raise ValueError(f"the window must lie in [1, {self.context}] (the context), got {window}")
        if not 0 < stride <= window:
            raise ValueError(f"the stride must lie in [1, {window}] (the window), got {stride}")
        from tqdm import tqdm

        data = data.long().to(self.decoder.head.weight.device)
        spans = []  # (start, end, first byte it scores)
        start = scored = 0
        while scored < n:
            end = min(start + window, n)
            spans.append((start, end, scored))
            start, scored = start + stride, end
        # Whole windows go through in batches; the shorter ones at the end of the stream one by one.
        whole = [span for span in spans if span[1] - span[0] == window]
        batches = [whole[i : i + batch_size] for i in range(0, len(whole), batch_size)]
        batches += [[span] for span in spans[len(whole) :]]
        total = 0.0
        for batch in tqdm(batches, desc="scoring", unit="batch", disable=not progress):
            bits = self.position_bits(torch.stack([data[a:b] for a, b, _ in batch]))
            total += sum(float(row[first - a :].sum()) for row, (a, _, first) in zip(bits, batch))
        return total / n

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new_bytes: int,
        *,
        use_cache: bool = True,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        callback: Callable[[torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Continue byte ids (b, l) by ``max_new_bytes``: (b, l + max_new_bytes), at most the context in all.
        See `PatchDecoder.generate`. Only bytes are generated: a vocabulary beyond 256 (the pad id of a converted
        mblm checkpoint) is never sampled, where the package would emit the pad id."""
        self._check_ids(prompt, self.context)
        if max_new_bytes < 0:
            raise ValueError(f"max_new_bytes must be >= 0, got {max_new_bytes}")
        return self.decoder.generate(
            prompt,
            max_new_bytes,
            use_cache=use_cache,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
            callback=callback,
            num_choices=256,
        )


def example(model: ByteLM) -> tuple[torch.Tensor]:
    """The input of a tiny forward pass (the registry's generic test): random byte ids (1, l), l <= 32."""
    return (torch.randint(0, 256, (1, min(32, model.context - 1))),)
