"""Released VALL-E weights -> our `Valle2` (G = 1): Plachtaa's VALL-E X ``vallex-checkpoint.pt``.

The file is ``torch.save({"model": state_dict})`` of one ``VALLE`` module holding the AR and the NAR decoder
(lifeiteng/vall-e's layout plus two language tables). Sizes come from the tensor shapes; the number of
attention heads is not stored and is an argument (16 in the release). Every source key must match
`KEY_MAP` (numbers stand for ``{}``), and every target key must be filled, or a `CheckpointError` names it.

Not converted: the release's text front end (a 69-symbol BPE G2P). Its ids are what the text embedding was
trained on; with our tokenizers the text side has to be fine-tuned.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from longseq.core.checkpoint import CheckpointError, load_pickle, load_strict
from longseq.speech.models.valle2 import Valle2, Valle2Config

_ATTN_FFN = {
    "self_attn.in_proj_weight": "attn.in_proj.weight",
    "self_attn.in_proj_bias": "attn.in_proj.bias",
    "self_attn.out_proj.weight": "attn.out_proj.weight",
    "self_attn.out_proj.bias": "attn.out_proj.bias",
    "linear1.weight": "mlp.fc1.weight",
    "linear1.bias": "mlp.fc1.bias",
    "linear2.weight": "mlp.fc2.weight",
    "linear2.bias": "mlp.fc2.bias",
}
_AR_NORMS = {f"{n}.{p}": f"{n}.{p}" for n in ("norm1", "norm2") for p in ("weight", "bias")}
_NAR_NORMS = {
    f"{n}.{part}.{p}": f"{n}.{part}.{p}"
    for n in ("norm1", "norm2")
    for part in ("project_layer", "norm")
    for p in ("weight", "bias")
}

KEY_MAP: dict[str, str] = {
    "ar_text_embedding.word_embeddings.weight": "ar.text.embedding.weight",
    "ar_language_embedding.word_embeddings.weight": "ar.text.language_embedding.weight",
    "ar_text_position.alpha": "ar.text.position.alpha",
    "ar_audio_embedding.word_embeddings.weight": "ar.audio_embedding.weight",
    "ar_audio_position.alpha": "ar.audio_position.alpha",
    **{f"ar_decoder.layers.{{}}.{k}": f"ar.decoder.layers.{{}}.{v}" for k, v in {**_ATTN_FFN, **_AR_NORMS}.items()},
    "ar_decoder.norm.weight": "ar.decoder.norm.weight",
    "ar_decoder.norm.bias": "ar.decoder.norm.bias",
    "ar_predict_layer.weight": "ar.head.weight",
    "nar_text_embedding.word_embeddings.weight": "nar.text.embedding.weight",
    "nar_language_embedding.word_embeddings.weight": "nar.text.language_embedding.weight",
    "nar_text_position.alpha": "nar.text.position.alpha",
    "nar_audio_embeddings.{}.word_embeddings.weight": "nar.audio_embeddings.{}.weight",
    "nar_audio_position.alpha": "nar.audio_position.alpha",
    **{f"nar_decoder.layers.{{}}.{k}": f"nar.decoder.layers.{{}}.{v}" for k, v in {**_ATTN_FFN, **_NAR_NORMS}.items()},
    **{
        f"nar_decoder.norm.{part}.{p}": f"nar.decoder.norm.{part}.{p}"
        for part in ("project_layer", "norm")
        for p in ("weight", "bias")
    },  # fmt: skip
    "nar_predict_layers.{}.weight": "nar.heads.{}.weight",
    # Seven one-row tables become the rows of one (n_q - 1, d) table: see `stack_stage_embeddings`.
    "nar_stage_embeddings.{}.word_embeddings.weight": "nar.stage_embedding.weight",
}


def _template(key: str) -> tuple[str, list[int]]:
    numbers = [int(n) for n in re.findall(r"(?<=\.)\d+(?=\.)", key)]
    return re.sub(r"(?<=\.)\d+(?=\.)", "{}", key), numbers


def stack_stage_embeddings(rows: dict[int, torch.Tensor]) -> torch.Tensor:
    """{k: (1, d)} for k = 0..n-1 -> (n, d)."""
    if sorted(rows) != list(range(len(rows))):
        raise CheckpointError(f"NAR stage embeddings are not numbered 0..{len(rows) - 1}: {sorted(rows)}")
    return torch.cat([rows[k] for k in range(len(rows))], dim=0)


def infer_config(state: dict[str, torch.Tensor], *, n_heads: int) -> Valle2Config:
    """The `Valle2Config` whose shapes match a VALL-E X / lifeiteng state dict."""

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"not a VALL-E checkpoint: missing {key}")
        return state[key]

    text_rows, d_model = need("ar_text_embedding.word_embeddings.weight").shape
    codebook_size = need("nar_audio_embeddings.1.word_embeddings.weight").shape[0]
    audio_rows = need("ar_audio_embedding.word_embeddings.weight").shape[0]
    if audio_rows != codebook_size + 2:
        raise CheckpointError(
            f"the AR audio embedding has {audio_rows} rows; only the BOS layout (codebook size + 2, "
            "VALL-E X / lifeiteng prepend_bos=true) converts"
        )
    n_codebooks = sum(1 for k in state if re.fullmatch(r"nar_audio_embeddings\.\d+\.word_embeddings\.weight", k))
    languages = state.get("ar_language_embedding.word_embeddings.weight")
    head, embedding = "nar_predict_layers.{}.weight", "nar_audio_embeddings.{}.word_embeddings.weight"
    tied = all(torch.equal(state[head.format(j)], state[embedding.format(j + 2)]) for j in range(n_codebooks - 2))

    def layers(prefix: str) -> int:
        return len({m.group(1) for k in state if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", k))})

    return Valle2Config(
        d_model=d_model,
        n_heads=n_heads,
        ar_layers=layers("ar_decoder"),
        nar_layers=layers("nar_decoder"),
        ffn_mult=need("ar_decoder.layers.0.linear1.weight").shape[0] // d_model,
        text_vocab_size=text_rows,
        n_languages=0 if languages is None else languages.shape[0],
        codebook_size=codebook_size,
        n_codebooks=n_codebooks,
        group_size=1,
        ar_tie_head=False,
        nar_stage="adaptive_norm",
        nar_tie_heads=tied,
        tokenizer="bytes",
        codec="encodec",
    )


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every key through `KEY_MAP`; an unmapped key raises `CheckpointError` naming it."""
    out: dict[str, torch.Tensor] = {}
    stage_rows: dict[int, torch.Tensor] = {}
    for key, tensor in state.items():
        template, numbers = _template(key)
        if template not in KEY_MAP:
            raise CheckpointError(f"unexpected key in VALL-E checkpoint: {key}")
        if template.startswith("nar_stage_embeddings"):
            stage_rows[numbers[0]] = tensor
            continue
        out[KEY_MAP[template].format(*numbers)] = tensor
    if stage_rows:
        out["nar.stage_embedding.weight"] = stack_stage_embeddings(stage_rows)
    return out


def convert_vallex(path: str | os.PathLike, *, n_heads: int = 16) -> Valle2:
    """Load a VALL-E X (or lifeiteng, BOS layout) checkpoint file into `Valle2` (strict; eval mode)."""
    obj = load_pickle(path)
    state = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a VALL-E checkpoint: expected {{'model': state_dict}}")
    config = infer_config(state, n_heads=n_heads)
    if config.d_model % n_heads:
        raise CheckpointError(f"d_model {config.d_model} is not divisible by n_heads {n_heads}")
    if config.n_languages == 0:
        # lifeiteng's layout: no language tables; zero ones make the same function (Plachtaa/VALL-E-X#87).
        config.n_languages = 1
        zeros = torch.zeros(1, config.d_model)
        state = {
            **state,
            "ar_language_embedding.word_embeddings.weight": zeros,
            "nar_language_embedding.word_embeddings.weight": zeros,
        }
    model = Valle2(config)
    return load_strict(model, convert_state_dict(state), str(Path(path))).eval()
