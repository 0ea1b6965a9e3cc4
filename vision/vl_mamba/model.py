"""VL-Mamba (arXiv 2403.13600): a LLaVA-style assistant whose language model is Mamba, with a 2D-scan connector.

    image -> vision encoder (timm ViT: SigLIP-SO400M/14 @ 384 or CLIP ViT-L/14 @ 336; the patch tokens of the
    penultimate block, as LLaVA) -> connector -> image tokens spliced into the text embeddings at ``<image>``
    -> Mamba LM (`core.lm.CausalLM`, official state-spaces / Hugging Face checkpoints via `core.from_pretrained`)

Connectors (paper section 3.3), on the (h, w) grid of patch features V:

    mlp      two-layer MLP (LLaVA-1.5's mlp2x_gelu)
    vss-mlp  MLP(LN(VSS(V) + V))
    vss-l2   V' = Linear(V); Linear(LN(VSS(GELU(V')) + V'))

VSS = one VMamba SS2D layer (`MultiScanSS2D` without LocalMamba's channel gate) scanning the grid bidirectionally
(BSM: h, h_flip, Vim's scan) or in four directions (CSM: VMamba's cross scan). No official code exists; the
module names here are ours (``vision``, ``connector``, ``lm``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError
from longseq.core.lm import CausalLM, LMConfig, sample_next
from longseq.core.norm import LayerNorm
from longseq.core.registry import Family, Pretrained
from longseq.vision.local_mamba.mixers import MultiScanSS2D
from longseq.vision.local_mamba.scans import BIDIRECTIONAL, CROSS

MODEL_TYPE = "vl_mamba"
IMAGE_TOKEN = -200  # LLaVA's placeholder id: where the image tokens go in input_ids
IGNORE_INDEX = -100


@dataclass(kw_only=True)
class VisionTowerConfig:
    """A timm ViT image encoder; None fields keep the architecture's own value."""

    arch: str = "vit_so400m_patch14_siglip_384"
    image_size: int | None = None
    patch_size: int | None = None
    width: int | None = None
    depth: int | None = None
    heads: int | None = None
    select_layer: int = -2
    """The block whose output feeds the connector (LLaVA: -2, the penultimate)."""

    def __post_init__(self):
        if not self.arch:
            raise ValueError("arch must name a timm ViT")
        for name in ("image_size", "patch_size", "width", "depth", "heads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"vision.{name} must be >= 1 or None, got {value}")

    def timm_kwargs(self) -> dict:
        names = {"image_size": "img_size", "patch_size": "patch_size", "width": "embed_dim", "depth": "depth"}
        kwargs = {timm_name: getattr(self, name) for name, timm_name in names.items() if getattr(self, name)}
        if self.heads:
            kwargs["num_heads"] = self.heads
        return kwargs


@dataclass(kw_only=True)
class VLMambaConfig:
    """VL-Mamba: vision tower, connector, language model."""

    vision: VisionTowerConfig = field(default_factory=VisionTowerConfig)
    connector: Literal["mlp", "vss-mlp", "vss-l2"] = "vss-l2"
    scan: Literal["bsm", "csm"] = "bsm"
    """The VSS connectors' 2D scan: bidirectional (BSM) or cross (CSM)."""
    vss_d_state: int = 16
    lm: LMConfig = field(default_factory=lambda: LMConfig(vocab_size=50277, d_model=2560, n_layer=64))
    context: int = 2048
    """The longest sequence (image tokens + text) the model runs: longer training records are refused, and answers
    stop being generated there (LLaVA-1.5's model_max_length)."""

    def __post_init__(self):
        if isinstance(self.vision, dict):  # from config.json
            self.vision = VisionTowerConfig(**self.vision)
        if isinstance(self.lm, dict):
            self.lm = LMConfig(**self.lm)
        if self.connector not in ("mlp", "vss-mlp", "vss-l2"):
            raise ValueError(f"connector must be mlp, vss-mlp or vss-l2; got {self.connector!r}")
        if self.scan not in ("bsm", "csm"):
            raise ValueError(f"scan must be bsm or csm; got {self.scan!r}")
        if self.vss_d_state < 1:
            raise ValueError(f"vss_d_state must be >= 1, got {self.vss_d_state}")
        if not 1 <= self.context <= 2**20:  # a bound on generation: a million recurrent steps already take hours
            raise ValueError(f"context must lie in [1, {2**20}], got {self.context}")


def build_vision_tower(config: VisionTowerConfig, weights: str | os.PathLike | None = None) -> nn.Module:
    """The timm ViT, its blocks after ``select_layer`` pruned; weights from a local file (timm / open_clip
    layouts go through timm's own filter, e.g. ``open_clip_pytorch_model.bin`` or ``model.safetensors``)."""
    import timm

    if weights is not None and not Path(weights).is_file():
        raise CheckpointError(f"vision tower weights not found: {weights}")
    overlay = {"file": str(weights), "num_classes": 0} if weights is not None else None
    try:
        tower = timm.create_model(
            config.arch, pretrained=weights is not None, pretrained_cfg_overlay=overlay, num_classes=0,
            **config.timm_kwargs(),
        )  # fmt: skip
    except RuntimeError as err:  # timm reports missing / mismatched keys as RuntimeError
        raise CheckpointError(f"{weights}: does not fit {config.arch}: {str(err).splitlines()[0]}") from None
    if not hasattr(tower, "forward_intermediates") or not hasattr(tower, "patch_embed"):
        raise InputError(f"{config.arch} is not a ViT with patch tokens")
    tower.prune_intermediate_layers([config.select_layer], prune_norm=True, prune_head=True)
    return tower


def vss(dim: int, *, scan: str, d_state: int, device=None, dtype=None) -> MultiScanSS2D:
    """One VMamba SS2D layer over the patch grid, (b, h, w, d) -> (b, h, w, d), scanned with BSM or CSM."""
    directions = BIDIRECTIONAL if scan == "bsm" else CROSS
    return MultiScanSS2D(dim, directions=directions, d_state=d_state, attn=False, device=device, dtype=dtype)


class Connector(nn.Module):
    """Patch features (b, dv, h, w) -> image tokens (b, h*w, d) for the language model (module docstring)."""

    def __init__(self, kind: str, vision_dim: int, lm_dim: int, *, scan: str, d_state: int, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.kind = kind
        if kind == "vss-l2":
            self.proj_in = nn.Linear(vision_dim, lm_dim, **dd)
            self.vss = vss(lm_dim, scan=scan, d_state=d_state, **dd)
            self.norm = LayerNorm(lm_dim, **dd)
            self.proj_out = nn.Linear(lm_dim, lm_dim, **dd)
            return
        if kind == "vss-mlp":
            self.vss = vss(vision_dim, scan=scan, d_state=d_state, **dd)
            self.norm = LayerNorm(vision_dim, **dd)
        self.fc1 = nn.Linear(vision_dim, lm_dim, **dd)
        self.fc2 = nn.Linear(lm_dim, lm_dim, **dd)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        v = features.permute(0, 2, 3, 1)  # (b, h, w, dv)
        if self.kind == "vss-l2":
            v = self.proj_in(v)
            v = self.proj_out(self.norm(self.vss(F.gelu(v)) + v))
        else:
            if self.kind == "vss-mlp":
                v = self.norm(self.vss(v) + v)
            v = self.fc2(F.gelu(self.fc1(v)))
        return v.flatten(1, 2)


class VLMamba(Pretrained, nn.Module):
    """Vision tower + connector + Mamba LM. Built from a `VLMambaConfig` (a composite of three sub-models)."""

    model_type = "vl_mamba"

    def __init__(self, config: VLMambaConfig, *, vision_weights: str | os.PathLike | None = None, device=None):
        super().__init__()
        self.config = config
        self.vision = build_vision_tower(config.vision, vision_weights).to(device)
        self.lm = CausalLM(config.lm, device=device)
        self.connector = Connector(
            config.connector,
            self.vision.num_features,
            config.lm.d_model,
            scan=config.scan,
            d_state=config.vss_d_state,
            device=device,
        )

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.vision.patch_embed.img_size)

    @property
    def num_image_tokens(self) -> int:
        """Tokens an image becomes in the language model's sequence (one per patch)."""
        return self.vision.patch_embed.num_patches

    def image_config(self) -> dict:
        """What images the tower expects: size and normalisation (from its timm pretrained config)."""
        cfg = self.vision.pretrained_cfg
        return {"size": self.image_size, "mean": cfg.get("mean", (0.5,) * 3), "std": cfg.get("std", (0.5,) * 3)}

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """images (b, 3, H, W), normalised -> image tokens (b, h*w, d_model)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"expected RGB images (b, 3, h, w); got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != self.image_size:
            raise InputError(f"the vision tower takes {self.image_size} images; got {tuple(images.shape[-2:])}")
        # the tower was pruned after the selected block: take its last block's output
        features = self.vision.forward_intermediates(images, indices=1, output_fmt="NCHW", intermediates_only=True)[0]
        return self.connector(features)

    def embed(self, input_ids: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings with each row's `IMAGE_TOKEN` replaced by that row's image tokens.

        Args:
            input_ids: (b, l) with exactly one IMAGE_TOKEN per row (rows are padded alike, see `vision.vl_mamba.data`).
            image_tokens: (b, n, d).

        Returns:
            (b, l - 1 + n, d).
        """
        is_image = input_ids == IMAGE_TOKEN
        if not bool((is_image.sum(1) == 1).all()):
            raise InputError("every sequence needs exactly one <image> placeholder")
        where = is_image.float().argmax(1)
        text = self.lm.backbone.embedding(input_ids.clamp(min=0))
        rows = []
        for row, at, image in zip(text, where.tolist(), image_tokens):
            rows.append(torch.cat([row[:at], image.to(row.dtype), row[at + 1 :]]))
        return torch.stack(rows)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor | None = None):
        """Logits (b, L, v) over the spliced sequence; with ``labels`` (b, l) (IGNORE_INDEX where no loss),
        also the next-token cross-entropy on the text positions. Returns (logits, loss or None)."""
        image_tokens = self.encode_images(images)
        logits = self.lm(None, inputs_embeds=self.embed(input_ids, image_tokens))
        if labels is None:
            return logits, None
        spliced = splice_labels(labels, input_ids, image_tokens.shape[1])
        loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), spliced[:, 1:].flatten(), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    @torch.inference_mode()
    def generate(
        self,
        images: torch.Tensor,
        input_ids: torch.Tensor,
        *,
        max_new_tokens: int = 16,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        eos_token_id: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Answer tokens (b, <= max_new_tokens) after the prompt: one parallel prefill over the spliced sequence,
        then recurrent steps (`core.lm`); greedy unless ``do_sample``. The prompt (image tokens included) and the
        answer must fit the model's ``context``."""
        prompt, context = input_ids.shape[1] - 1 + self.num_image_tokens, self.config.context
        if prompt >= context:
            raise InputError(f"the image and the prompt take {prompt} tokens; the model's context is {context}")
        if not 1 <= max_new_tokens <= context - prompt:
            raise InputError(
                f"max_new_tokens must lie in [1, {context - prompt}] (the model's context is {context} tokens, the "
                f"image and the prompt take {prompt}); got {max_new_tokens}"
            )
        embeds = self.embed(input_ids, self.encode_images(images))
        states = self.lm.init_states(len(embeds), max_seqlen=embeds.shape[1] + max_new_tokens, device=embeds.device)
        logits = self.lm(None, states, num_last_tokens=1, inputs_embeds=embeds)[:, -1]
        generator = None
        if do_sample:
            generator = torch.Generator(device=embeds.device)
            generator.manual_seed(seed if seed is not None else torch.seed())
        vocab = self.config.lm.vocab_size
        finished = torch.zeros(len(embeds), dtype=torch.bool, device=embeds.device)
        out = []
        for _ in range(max_new_tokens):
            token = sample_next(
                logits[:, :vocab], do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                generator=generator,
            )  # fmt: skip
            if eos_token_id is not None:
                token = token.masked_fill(finished, eos_token_id)
                finished |= token == eos_token_id
            out.append(token)
            if bool(finished.all()):
                break
            logits = self.lm.step(token, states)
        return torch.stack(out, dim=1)

    def set_stage(self, stage: Literal["align", "instruct"]) -> None:
        """Freeze for a training stage: align trains the connector only; instruct the connector and the LM.
        The vision tower stays frozen in both (as in LLaVA-1.5 and VL-Mamba)."""
        if stage not in ("align", "instruct"):
            raise ValueError(f"stage must be align or instruct; got {stage!r}")
        self.vision.requires_grad_(False)
        self.lm.requires_grad_(stage == "instruct")
        self.connector.requires_grad_(True)

    @classmethod
    def from_parts(
        cls,
        config: VLMambaConfig,
        *,
        lm: str | os.PathLike | None = None,
        vision_weights: str | os.PathLike | None = None,
    ) -> VLMamba:
        """Assemble a model for stage 1: a pretrained Mamba LM (any layout `core.from_pretrained` reads) and
        vision weights from local files; the connector starts fresh. The LM's config replaces ``config.lm``."""
        from longseq import from_pretrained as load_lm

        language_model = load_lm(lm) if lm is not None else None
        if language_model is not None:
            config = dataclasses.replace(config, lm=language_model.config)
        model = cls(config, vision_weights=vision_weights)
        if language_model is not None:
            model.lm = language_model
        return model


def splice_labels(labels: torch.Tensor, input_ids: torch.Tensor, n_image: int) -> torch.Tensor:
    """Labels (b, l) -> (b, l - 1 + n_image) aligned with `VLMamba.embed`: IGNORE_INDEX over the image tokens."""
    where = (input_ids == IMAGE_TOKEN).float().argmax(1).tolist()
    fill = labels.new_full((n_image,), IGNORE_INDEX)
    return torch.stack([torch.cat([row[:at], fill, row[at + 1 :]]) for row, at in zip(labels, where)])


PRESETS: dict[str, VLMambaConfig] = {
    # the paper's final model: SigLIP-SO400M/14 @ 384 (27x27 tokens), VSS-L2 with BSM, Mamba-2.8B (SlimPajama)
    "vl-mamba-siglip": VLMambaConfig(vision=VisionTowerConfig(arch="vit_so400m_patch14_siglip_384")),
    # its CLIP variant (ViT-L/14 @ 336, 24x24 tokens)
    "vl-mamba-clip": VLMambaConfig(vision=VisionTowerConfig(arch="vit_large_patch14_clip_336")),
    # small models trained here on a CPU: 28x28 images, 7x7 tokens, a 2-layer Mamba LM (vocab set by the tokenizer)
    "vl-mamba-tiny": VLMambaConfig(
        vision=VisionTowerConfig(arch="vit_tiny_patch16_224", image_size=28, patch_size=4, width=64, depth=4, heads=4),
        lm=LMConfig(vocab_size=64, d_model=64, n_layer=2),
    ),
    "vl-mamba-test": VLMambaConfig(
        vision=VisionTowerConfig(arch="vit_tiny_patch16_224", image_size=16, patch_size=4, width=32, depth=2, heads=2),
        lm=LMConfig(vocab_size=64, d_model=32, n_layer=1),
        vss_d_state=4,
    ),
}


def _example(model: VLMamba) -> tuple[torch.Tensor, torch.Tensor]:
    """An image and a three-token prompt after it."""
    ids = torch.tensor([[IMAGE_TOKEN, 1, 2, 3]])
    return torch.randn(1, 3, *model.image_size), ids


FAMILY = Family(model_class=VLMamba, config_class=VLMambaConfig, presets=PRESETS, example=_example)
