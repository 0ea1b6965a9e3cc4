"""The character tokenizer of HyenaDNA and Caduceus (one vocabulary for both), with a stated input policy.

Ids, as in the released models: ``[CLS]`` 0, ``[SEP]`` 1, ``[BOS]`` 2, ``[MASK]`` 3, ``[PAD]`` 4, ``[RESERVED]`` 5,
``[UNK]`` 6, A 7, C 8, G 9, T 10, N 11. The embedding tables have 16 rows (12 padded to a multiple of 8).

Input policy (one place, applied to every reader and CLI):

- A, C, G, T, N in either case. Lowercase marks soft-masked repeats in reference genomes; by default it is
  read as the base (``soft_masked="upper"``, what Caduceus's tokenizer does), or as N (``soft_masked="n"``).
- U is read as T (RNA).
- The IUPAC ambiguity codes R Y S W K M B D H V (either case) become N (``ambiguous="n"``), or are refused
  (``ambiguous="error"``).
- Anything else (gaps ``-``/``.``, ``*``, digits, non-ASCII) is an `InputError` naming the character and where
  it is. The upstream tokenizers map such characters to ``[UNK]`` silently; we do not.

Batches are padded on the right with ``[PAD]`` and carry their lengths. The models take no attention mask, and
the Hugging Face tokenizers pad on the left, which feeds pad tokens into every real position of a causal model.
Here a causal model never sees the padding at real positions, the bidirectional one reverses each sequence
within its own length, and pooling uses the lengths, so padding cannot leak into embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from longseq.core.io import InputError

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
CLS, SEP, BOS, MASK, PAD, RESERVED, UNK = range(7)
A, C, G, T, N = 7, 8, 9, 10, 11
VOCAB = (*SPECIAL_TOKENS, "A", "C", "G", "T", "N")
VOCAB_SIZE = 12
EMBEDDING_ROWS = 16
# The complement of every id (A<->T, C<->G, everything else itself), over the 16 embedding rows.
COMPLEMENT = (0, 1, 2, 3, 4, 5, 6, T, G, C, A, N, 12, 13, 14, 15)
IUPAC_AMBIGUOUS = "RYSWKMBDHV"

SoftMasked = Literal["upper", "n"]
Ambiguous = Literal["n", "error"]

_INVALID = -1


def _lookup(soft_masked: SoftMasked, ambiguous: Ambiguous) -> np.ndarray:
    table = np.full(256, _INVALID, dtype=np.int8)
    for char, idx in (("A", A), ("C", C), ("G", G), ("T", T), ("U", T), ("N", N)):
        table[ord(char)] = idx
        table[ord(char.lower())] = idx if soft_masked == "upper" else N
    if ambiguous == "n":
        for char in IUPAC_AMBIGUOUS:
            table[ord(char)] = table[ord(char.lower())] = N
    return table


class DNATokenizer:
    """Bases to ids and back, by one 256-entry lookup (a 5 Mbp record encodes in milliseconds).

    Args:
        soft_masked: lowercase bases read as the base ("upper") or as N ("n").
        ambiguous: IUPAC ambiguity codes become N ("n") or are refused ("error").
    """

    def __init__(self, *, soft_masked: SoftMasked = "upper", ambiguous: Ambiguous = "n"):
        if soft_masked not in ("upper", "n"):
            raise ValueError(f"soft_masked must be 'upper' or 'n'; got {soft_masked!r}")
        if ambiguous not in ("n", "error"):
            raise ValueError(f"ambiguous must be 'n' or 'error'; got {ambiguous!r}")
        self.soft_masked = soft_masked
        self.ambiguous = ambiguous
        self._table = _lookup(soft_masked, ambiguous)

    def encode(self, seq: str, *, add_eos: bool = False, name: str = "sequence", offset: int = 0) -> np.ndarray:
        """A sequence to ids (int64 array), ``[SEP]`` appended with ``add_eos`` (as in HyenaDNA pretraining).

        Args:
            name, offset: how errors name the record and the position of ``seq[0]`` in it.

        Raises:
            InputError: a character outside the policy, named with its 1-based position.
        """
        try:
            raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError as err:
            raise InputError(
                f"{name}: non-ASCII character {seq[err.start]!r} at position {offset + err.start + 1}"
            ) from None
        ids = self._table[raw]
        bad = np.flatnonzero(ids == _INVALID)
        if bad.size:
            i = int(bad[0])
            char = seq[i]
            kind = "an IUPAC ambiguity code (ambiguous='error')" if char.upper() in IUPAC_AMBIGUOUS else "not a base"
            raise InputError(f"{name}: character {char!r} at position {offset + i + 1} is {kind}")
        ids = ids.astype(np.int64)
        return np.append(ids, SEP) if add_eos else ids

    def decode(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
        """Ids to text; special tokens are written as their names."""
        values = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return "".join(VOCAB[i] if 0 <= i < VOCAB_SIZE else "[UNK]" for i in values)


def complement_table(device=None) -> torch.Tensor:
    """`COMPLEMENT` as an int64 tensor (16,)."""
    return torch.tensor(COMPLEMENT, dtype=torch.long, device=device)


def reverse(x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Reverse dim 1 of x (b, l, ...) within each sequence's length; positions >= length stay where they are.

    With right-padded batches this is the reversal each sequence would get alone, so a bidirectional model never
    reads padding before real tokens.
    """
    if lengths is None:
        return x.flip(1)
    l = x.shape[1]
    pos = torch.arange(l, device=x.device)
    idx = torch.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos)  # (b, l)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def reverse_complement(ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The reverse complement of ids (b, l), within each sequence's length (padding stays at the end)."""
    return complement_table(ids.device)[reverse(ids, lengths)]


def pad_batch(seqs: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences with ``[PAD]``: ids (b, l_max) int64 and lengths (b,) int64."""
    if not seqs:
        raise ValueError("pad_batch needs at least one sequence")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = torch.full((len(seqs), int(lengths.max())), PAD, dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return ids, lengths
