"""`tts train`: build the task and data for a model (by its type) and fit it with `core.train`.

Lightning checkpoints go to ``<out>/checkpoints`` (``last.ckpt``, resumable exactly); the trained model is
written to ``<out>`` in our format, with its codec copied to ``<out>/codec`` when the codec is a directory,
so that the output directory alone synthesizes.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError
from longseq.core.registry import from_pretrained
from longseq.core.train import OptimizerConfig, TrainerConfig, build_trainer, fit
from longseq.speech.codecs import load_codec
from longseq.speech.codecs.mel import MelCodec
from longseq.speech.data.codes import EncodedCorpus, encode_corpus
from longseq.speech.data.manifest import read_manifest
from longseq.speech.models.clam_tts import ClamTTS
from longseq.speech.models.speechssm import SpeechSSM
from longseq.speech.models.valle2 import Valle2
from longseq.speech.tasks.clam import ClamTTSTask
from longseq.speech.tasks.codec import MelCodecTask
from longseq.speech.tasks.data import AudioCrops, CodeUtterances, ResumableDataModule, collate_utterances
from longseq.speech.tasks.speechssm import CodeSegments, SpeechSSMTask
from longseq.speech.tasks.valle import Valle2Task

# Models trained on codec codes, saved with their codec beside them.
LANGUAGE_MODELS = (Valle2, ClamTTS, SpeechSSM)


@dataclasses.dataclass(kw_only=True)
class TrainOptions:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    max_seconds: float = 10.0
    segment_seconds: float = 1.0
    pair_probability: float = 0.5
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    checkpoint_every: int = 500
    val_every: int | None = None
    val_batches: int = 4
    resume: bool = False
    progress_bar: bool | None = None
    seed: int = 0


def _trainer(out: Path, options: TrainOptions, run_name: str):
    config = TrainerConfig(
        max_steps=options.steps,
        accelerator=options.accelerator,
        devices=options.devices,
        strategy=options.strategy,
        checkpoint_dir=str(out / "checkpoints"),
        checkpoint_every_n_steps=min(options.checkpoint_every, options.steps),
        val_every_n_batches=options.val_every,
        limit_val_batches=options.val_batches,
        log_dir=str(out / "logs"),
        run_name=run_name,
        log_every_n_steps=min(10, options.steps),
        progress_bar=options.progress_bar,
        seed=options.seed,
    )
    return build_trainer(config)


def _optimizer(options: TrainOptions, *, weight_decay: float | None = None) -> OptimizerConfig:
    return OptimizerConfig(
        lr=options.lr,
        weight_decay=options.weight_decay if weight_decay is None else weight_decay,
        warmup_steps=min(options.warmup_steps, options.steps - 1),
    )


def _code_corpus(corpus: str, codec: str | None, codec_weights: str | None, out: Path) -> EncodedCorpus:
    """An encoded corpus: a codes file as is, or a corpus directory encoded now (cached in ``out``)."""
    path = Path(corpus)
    if path.is_file() and path.suffix == ".safetensors":
        return EncodedCorpus.load(path)
    if codec is None:
        raise InputError("training on an audio corpus needs --codec (or pass an encoded .safetensors corpus)")
    cache = out / "codes.safetensors"
    if cache.is_file():
        encoded = EncodedCorpus.load(cache)
        if encoded.codec == codec:
            return encoded
    encoded = encode_corpus(read_manifest(path), load_codec(codec, encodec_weights=codec_weights), codec)
    out.mkdir(parents=True, exist_ok=True)
    encoded.save(cache)
    return encoded


def train_model(
    model_name: str,
    corpus: str,
    out: str,
    *,
    codec: str | None,
    codec_weights: str | None,
    overrides: dict,
    options: TrainOptions,
) -> Path:
    """Train (or fine-tune, when ``model_name`` is a checkpoint directory) and save to ``out``."""
    out_dir = Path(out)
    model = from_pretrained(model_name, **overrides)
    if Path(model_name).is_dir() and isinstance(model, LANGUAGE_MODELS):
        # A codec the checkpoint names by a relative directory lives inside the checkpoint.
        relative = Path(model_name) / model.config.codec
        if not Path(model.config.codec).is_absolute() and relative.is_dir():
            model.config.codec = str(relative)
    model.train()
    if isinstance(model, MelCodec):
        task, data = _codec_setup(model, corpus, options)
    elif isinstance(model, Valle2):
        task, data, codec = _valle_setup(model, corpus, codec, codec_weights, out_dir, options)
    elif isinstance(model, ClamTTS):
        task, data, codec = _clam_setup(model, corpus, codec, codec_weights, out_dir, options)
    elif isinstance(model, SpeechSSM):
        task, data, codec = _speechssm_setup(model, corpus, codec, codec_weights, out_dir, options)
    else:
        raise CheckpointError(f"cannot train a {type(model).__name__}")
    trainer = _trainer(out_dir, options, run_name=type(model).__name__.lower())
    fit(trainer, task, data, resume="last" if options.resume else None)
    # The final state too, optimizer included, so that a later --resume with more steps continues from the end.
    trainer.save_checkpoint(out_dir / "checkpoints" / "last.ckpt", weights_only=False)
    model.eval()
    if trainer.global_rank == 0:
        if isinstance(model, LANGUAGE_MODELS) and Path(codec).is_dir():
            _copy_codec(Path(codec), out_dir)
            model.config.codec = "codec"
        model.save_pretrained(out_dir)
    return out_dir


def _copy_codec(codec_dir: Path, out: Path) -> None:
    """The codec beside the model (``out/codec``), so that the output directory synthesizes on its own."""
    target = out / "codec"
    if codec_dir.resolve() != target.resolve():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(codec_dir, target)


def _codec_setup(model: MelCodec, corpus: str, options: TrainOptions):
    utterances = read_manifest(corpus)
    train = [u for u in utterances if u.split == "train"] or utterances
    heldout = [u for u in utterances if u.split != "train"]
    segment = int(options.segment_seconds * model.sample_rate)
    crops = {"sample_rate": model.sample_rate, "segment": segment, "seed": options.seed}
    data = ResumableDataModule(
        AudioCrops(train, crops_per_utterance=max(1, options.steps * options.batch_size // len(train)), **crops),
        AudioCrops(heldout, **crops) if heldout else None,
        batch_size=options.batch_size,
        seed=options.seed,
    )
    return MelCodecTask(model, optimizer=_optimizer(options, weight_decay=0.0)), data


def _valle_setup(model: Valle2, corpus: str, codec: str | None, codec_weights, out: Path, options: TrainOptions):
    encoded, codec = _model_codes(model, corpus, codec, codec_weights, out)
    data = _utterance_data(
        model, encoded, options, group_size=model.config.group_size, pair_probability=options.pair_probability
    )
    return Valle2Task(model, frame_rate=encoded.frame_rate, optimizer=_optimizer(options)), data, codec


def _model_codes(model, corpus: str, codec: str | None, codec_weights, out: Path) -> tuple[EncodedCorpus, str]:
    """The encoded corpus and the codec spec for a language model (which then names that codec)."""
    encoded = _code_corpus(corpus, codec or model.config.codec, codec_weights, out)
    codec = codec or encoded.codec
    if codec != model.config.codec:
        model.config.codec = codec
    if max(int(c.max()) for c in encoded.codes) >= model.config.codebook_size:
        raise InputError(f"the corpus codes exceed the model's codebook size {model.config.codebook_size}")
    return encoded, codec


def _utterance_data(
    model, encoded: EncodedCorpus, options: TrainOptions, *, group_size: int, pair_probability: float
) -> ResumableDataModule:
    """Utterances (text, codes) of the training split, a ``pair_probability`` share of them preceded by another
    of the same speaker (`CodeUtterances`); validation on the held-out speakers' single utterances."""
    tokenizer = model.config.text_tokenizer()
    size = {
        "n_codebooks": model.config.n_codebooks,
        "group_size": group_size,
        "max_frames": int(options.max_seconds * encoded.frame_rate),
    }
    train_ids = encoded.indices("train") or list(range(len(encoded)))
    heldout = encoded.indices("test_speaker")
    # With pairs, one epoch spans the whole run (every utterance once per pass), so that each visit of an
    # utterance draws its own partner.
    passes = max(1, options.steps * options.batch_size // len(train_ids)) if pair_probability > 0 else 1
    pairs = {"pair_probability": pair_probability, "passes": passes, "seed": options.seed}
    return ResumableDataModule(
        CodeUtterances(encoded, train_ids, tokenizer, **size, **pairs),
        CodeUtterances(encoded, heldout, tokenizer, **size) if heldout else None,
        batch_size=options.batch_size,
        seed=options.seed,
        collate_fn=collate_utterances,
    )


def _clam_setup(model: ClamTTS, corpus: str, codec: str | None, codec_weights, out: Path, options: TrainOptions):
    """The latent LM learns on codes of its Mel-VAE, whose quantizer it copies (frozen)."""
    encoded, codec = _model_codes(model, corpus, codec, codec_weights, out)
    if Path(encoded.codec).is_dir() != Path(codec).is_dir() or (
        Path(codec).is_dir() and Path(encoded.codec).resolve() != Path(codec).resolve()
    ):
        raise InputError(f"the corpus was encoded with {encoded.codec!r}, not with the codec {codec!r}")
    model.attach_codec(load_codec(codec, encodec_weights=codec_weights))
    data = _utterance_data(model, encoded, options, group_size=1, pair_probability=options.pair_probability)
    return ClamTTSTask(model, optimizer=_optimizer(options)), data, codec


def _speechssm_setup(model: SpeechSSM, corpus: str, codec: str | None, codec_weights, out: Path, options: TrainOptions):
    """Fixed-length segments (``model.config.segment_seconds``) of the training speakers' streams."""
    encoded, codec = _model_codes(model, corpus, codec, codec_weights, out)
    size = {
        "n_codebooks": model.config.n_codebooks,
        "segment_frames": round(model.config.segment_seconds * encoded.frame_rate),
        "seed": options.seed,
    }
    train_ids = encoded.indices("train") or list(range(len(encoded)))
    heldout = encoded.indices("test_speaker")
    data = ResumableDataModule(
        CodeSegments(encoded, train_ids, **size),
        CodeSegments(encoded, heldout, **size) if heldout else None,
        batch_size=options.batch_size,
        seed=options.seed,
    )
    return SpeechSSMTask(model, optimizer=_optimizer(options)), data, codec
