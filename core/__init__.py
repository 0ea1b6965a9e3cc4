"""Shared sequence blocks: Mamba / Mamba-2, Hyena, attention, hierarchical patch decoders, causal LMs.

Shape letters used throughout `core/`:

    b  batch          l  sequence length      d  model width (d_model)      v  vocabulary size
    h  heads          p  head dim             n  SSM state size             w  short conv width

Sequences are batch-first, (b, l, d). Every mixer follows the protocol in `core.block` (forward with an
optional state, init_state, step).
"""

from longseq.core.attention import Attention, KVCache
from longseq.core.block import Block, Mixer
from longseq.core.checkpoint import CheckpointError, save_checkpoint
from longseq.core.hierarchical import HierarchicalState, PatchDecoder
from longseq.core.hyena import HyenaOperator, HyenaState
from longseq.core.io import (
    InputError,
    atomic_output,
    check_new_directory,
    check_not_overwriting,
    new_directory,
    resolve_device,
)
from longseq.core.lm import CausalLM, LMConfig
from longseq.core.mlp import Mlp
from longseq.core.norm import GatedRMSNorm, LayerNorm, RMSNorm, add_norm
from longseq.core.rotary import RotaryEmbedding
from longseq.core.ssm import Mamba, Mamba2, Mamba2State, MambaState
from longseq.core.stack import MixerStack, make_mixer

__all__ = [
    "Attention",
    "Block",
    "CausalLM",
    "CheckpointError",
    "GatedRMSNorm",
    "HierarchicalState",
    "HyenaOperator",
    "HyenaState",
    "InputError",
    "KVCache",
    "LMConfig",
    "LayerNorm",
    "Mamba",
    "Mamba2",
    "Mamba2State",
    "MambaState",
    "Mixer",
    "MixerStack",
    "Mlp",
    "PatchDecoder",
    "RMSNorm",
    "RotaryEmbedding",
    "add_norm",
    "atomic_output",
    "check_new_directory",
    "check_not_overwriting",
    "make_mixer",
    "new_directory",
    "resolve_device",
    "save_checkpoint",
]
