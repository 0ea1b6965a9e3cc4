"""The released VALL-E X layout of the VALL-E 2 family: Plachtaa's ``vallex-checkpoint.pt`` (and lifeiteng/vall-e
files in its BOS layout), read by `longseq.from_pretrained(path, n_heads=16)` into `Valle2` with G = 1.

The file is ``torch.save({"model": state_dict})`` of one ``VALLE`` module holding the AR and the NAR decoder
(lifeiteng/vall-e's layout plus two language tables). Sizes come from the tensor shapes; the number of
attention heads is not stored and is an override (16 in the release). The keys are renamed by `KEYS`; an
unmapped file key or an unfilled model key is a one-line `CheckpointError`.

The model speaks through the release's text front end (``tokenizer="vallex"``: `longseq.speech.text.vallex`,
the alphabet of the official ``bpe_69.json``); ``tokenizer=...`` moves it to another one for fine-tuning
(the text tables are rebuilt: `longseq.speech.models.valle2.adapt`).
"""

from __future__ import annotations

import re

import torch

from longseq.core.checkpoint import CheckpointError
from longseq.core.keymap import KeyMap
from longseq.core.registry import Layout, Source
from longseq.speech.models.valle2 import Valle2, Valle2Config, adapt

_DECODER = r"(ar|nar)_decoder\.layers\.(\d+)"
RULES = [
    (r"(ar|nar)_text_embedding\.word_embeddings\.weight", r"\1.text.embedding.weight"),
    (r"(ar|nar)_language_embedding\.word_embeddings\.weight", r"\1.text.language_embedding.weight"),
    (r"(ar|nar)_text_position\.alpha", r"\1.text.position.alpha"),
    (r"(ar|nar)_audio_position\.alpha", r"\1.audio_position.alpha"),
    (r"ar_audio_embedding\.word_embeddings\.weight", "ar.audio_embedding.weight"),
    (r"nar_audio_embeddings\.(\d+)\.word_embeddings\.weight", r"nar.audio_embeddings.\1.weight"),
    (_DECODER + r"\.self_attn\.in_proj_(weight|bias)", r"\1.decoder.layers.\2.attn.in_proj.\3"),
    (_DECODER + r"\.self_attn\.out_proj\.(weight|bias)", r"\1.decoder.layers.\2.attn.out_proj.\3"),
    (_DECODER + r"\.linear1\.(weight|bias)", r"\1.decoder.layers.\2.mlp.fc1.\3"),
    (_DECODER + r"\.linear2\.(weight|bias)", r"\1.decoder.layers.\2.mlp.fc2.\3"),
    # AR norms are LayerNorms; NAR norms are adaptive (a projection of the stage embedding and a LayerNorm).
    (r"ar_decoder\.layers\.(\d+)\.(norm[12])\.(weight|bias)", r"ar.decoder.layers.\1.\2.\3"),
    (r"nar_decoder\.layers\.(\d+)\.(norm[12])\.(project_layer|norm)\.(weight|bias)", r"nar.decoder.layers.\1.\2.\3.\4"),
    (r"ar_decoder\.norm\.(weight|bias)", r"ar.decoder.norm.\1"),
    (r"nar_decoder\.norm\.(project_layer|norm)\.(weight|bias)", r"nar.decoder.norm.\1.\2"),
    (r"ar_predict_layer\.weight", "ar.head.weight"),
    (r"nar_predict_layers\.(\d+)\.weight", r"nar.heads.\1.weight"),
    # The seven one-row stage tables, stacked by `stack_stage_embeddings` before renaming.
    (r"nar_stage_embeddings\.weight", "nar.stage_embedding.weight"),
]
_STAGE = re.compile(r"nar_stage_embeddings\.(\d+)\.word_embeddings\.weight")


def keys(config: Valle2Config) -> KeyMap:
    """The key map for a file of ``config``'s shape: NAR head k is tied to audio embedding k + 2 when the file's
    heads equal those embeddings (as released), which the file stores twice."""
    tied = {}
    if config.nar_tie_heads:
        tied = {f"nar.heads.{k}.weight": f"nar.audio_embeddings.{k + 2}.weight" for k in range(config.n_codebooks - 2)}
    return KeyMap(rules=RULES, tied=tied)


def stack_stage_embeddings(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The NAR stage tables {k: (1, d)} for k = 0..n-1 -> one (n, d) table ``nar_stage_embeddings.weight``."""
    rows = {int(m.group(1)): tensor for key, tensor in state.items() if (m := _STAGE.fullmatch(key))}
    if sorted(rows) != list(range(len(rows))):
        raise CheckpointError(f"NAR stage embeddings are not numbered 0..{len(rows) - 1}: {sorted(rows)}")
    if not rows:
        return state
    rest = {key: tensor for key, tensor in state.items() if not _STAGE.fullmatch(key)}
    return {**rest, "nar_stage_embeddings.weight": torch.cat([rows[k] for k in range(len(rows))], dim=0)}


def infer_config(state: dict[str, torch.Tensor], *, n_heads: int, source: str) -> Valle2Config:
    """The `Valle2Config` whose shapes match a VALL-E X / lifeiteng state dict."""

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"{source} is not a VALL-E checkpoint: it lacks {key}")
        return state[key]

    text_rows, d_model = need("ar_text_embedding.word_embeddings.weight").shape
    codebook_size = need("nar_audio_embeddings.1.word_embeddings.weight").shape[0]
    audio_rows = need("ar_audio_embedding.word_embeddings.weight").shape[0]
    if audio_rows != codebook_size + 2:
        raise CheckpointError(
            f"{source}: the AR audio embedding has {audio_rows} rows; only the BOS layout (codebook size + 2, "
            "VALL-E X / lifeiteng prepend_bos=true) converts"
        )
    n_codebooks = sum(1 for k in state if re.fullmatch(r"nar_audio_embeddings\.\d+\.word_embeddings\.weight", k))
    languages = state.get("ar_language_embedding.word_embeddings.weight")
    head, embedding = "nar_predict_layers.{}.weight", "nar_audio_embeddings.{}.word_embeddings.weight"
    tied = all(torch.equal(need(head.format(k)), need(embedding.format(k + 2))) for k in range(n_codebooks - 2))

    def layers(prefix: str) -> int:
        return len({m.group(1) for k in state if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", k))})

    if not isinstance(n_heads, int) or n_heads < 1 or d_model % n_heads:
        raise CheckpointError(f"{source}: n_heads must be a positive divisor of d_model {d_model}; got {n_heads!r}")
    try:
        return Valle2Config(
            d_model=d_model,
            n_heads=n_heads,
            ar_layers=layers("ar_decoder"),
            nar_layers=layers("nar_decoder"),
            ffn_mult=need("ar_decoder.layers.0.linear1.weight").shape[0] // d_model,
            text_vocab_size=text_rows,
            # lifeiteng's layout has no language tables; one zero table makes the same function (VALL-E-X#87).
            n_languages=1 if languages is None else languages.shape[0],
            codebook_size=codebook_size,
            n_codebooks=n_codebooks,
            group_size=1,
            ar_tie_head=False,
            nar_stage="adaptive_norm",
            nar_tie_heads=tied,
            tokenizer="vallex",
            codec="encodec",
        )
    except ValueError as err:
        raise CheckpointError(f"{source}: the shapes describe no valid VALL-E 2: {err}") from None


def load_vallex(source: Source, *, n_heads: int = 16, **changes) -> Valle2:
    """A VALL-E X (or lifeiteng, BOS layout) file -> `Valle2`; ``changes`` (group_size, tokenizer) then move it
    to another group size or text front end for fine-tuning (`adapt`)."""
    state = source.contents["model"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source} is not a VALL-E checkpoint: its 'model' holds more than tensors")
    config = infer_config(state, n_heads=n_heads, source=str(source))
    if "ar_language_embedding.word_embeddings.weight" not in state:
        zeros = torch.zeros(1, config.d_model)
        state = {
            **state,
            "ar_language_embedding.word_embeddings.weight": zeros,
            "nar_language_embedding.word_embeddings.weight": zeros,
        }
    model = keys(config).load(Valle2(config), stack_stage_embeddings(state), str(source))
    return adapt(model, changes) if changes else model


def _is_vallex(source: Source) -> bool:
    """``{"model": state_dict}`` whose keys are lifeiteng's decoders (``ar_decoder.*``, ``nar_decoder.*``)."""
    state = source.contents.get("model") if isinstance(source.contents, dict) else None
    return isinstance(state, dict) and any(str(k).startswith(("ar_decoder.", "nar_decoder.")) for k in state)


VALLEX = Layout("vallex", _is_vallex, load_vallex, files=True, overrides=("n_heads", "group_size", "tokenizer"))
