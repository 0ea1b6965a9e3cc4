"""The one key-map helper every converter uses: official checkpoint keys -> ours.

A `KeyMap` is data, kept beside the family it converts:

- ``rules``: (pattern, replacement[, transform]) in order; a file key that fully matches a pattern becomes the
  replacement (``re.Match.expand``: ``\\1`` or ``\\g<name>`` copy groups), its tensor passed through the
  optional transform (a small named function: a reshape, an upcast). The first matching rule wins.
- ``drop``: patterns of file keys that carry nothing we load (buffers we rebuild, a training-only head).
- ``tied``: our key -> the our-key it shares its tensor with. A file may omit the alias (filled from the other)
  or store a copy (which must be equal, or the file describes another, untied model).

A file key no rule or drop pattern matches, two file keys landing on one of ours, or a model key left unfilled
raise a one-line `CheckpointError` naming them; the result loads with ``strict=True``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from longseq.core.checkpoint import CheckpointError, format_keys, load_strict

Transform = Callable[[torch.Tensor], torch.Tensor]
Rule = tuple[str, str] | tuple[str, str, Transform]


@dataclass(frozen=True)
class KeyMap:
    rules: Sequence[Rule]
    drop: Sequence[str] = ()
    tied: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        compiled = [(re.compile(rule[0]), rule[1], rule[2] if len(rule) > 2 else None) for rule in self.rules]
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_drop", [re.compile(pattern) for pattern in self.drop])

    def rename(self, state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """``state`` under our names (tied aliases not yet filled)."""
        out: dict[str, torch.Tensor] = {}
        origin: dict[str, str] = {}
        unknown = []
        for key, tensor in state.items():
            target = self._target(key)
            if target is None:
                if not any(pattern.fullmatch(key) for pattern in self._drop):
                    unknown.append(key)
                continue
            ours, transform = target
            if ours in out:
                raise CheckpointError(f"{source}: {origin[ours]} and {key} both map to {ours}")
            out[ours], origin[ours] = (transform(tensor) if transform else tensor), key
        if unknown:
            raise CheckpointError(f"{source}: keys no rule maps: {format_keys(sorted(unknown))}")
        return out

    def load(self, model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
        """Rename ``state``, fill or check the tied aliases, and load it strictly into ``model``."""
        ours = self.rename(state, source)
        for alias, target in self.tied.items():
            if target not in ours:
                continue
            if alias not in ours:
                ours[alias] = ours[target]
            elif not torch.equal(ours[alias], ours[target]):
                raise CheckpointError(f"{source}: {alias} differs from {target}, which the model ties it to")
        return load_strict(model, ours, source)

    def _target(self, key: str) -> tuple[str, Transform | None] | None:
        for pattern, replacement, transform in self._compiled:
            found = pattern.fullmatch(key)
            if found:
                return found.expand(replacement), transform
        return None
