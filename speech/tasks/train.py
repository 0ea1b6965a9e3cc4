"""`tts train`: build the task and data for a model (by its type) and fit it with `core.train`.

The trained model is written to the output directory in our format, with its codec copied to ``<output>/codec``
when the codec is a directory, so that the output directory alone synthesizes. The output directory appears
when the inputs pass and is removed if the run fails; Lightning checkpoints (``--trainer.checkpoint_dir``,
resumable with ``--trainer.resume last``) live outside it, so that a failed run can be resumed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from longseq.core.checkpoint import CheckpointError
from longseq.core.io import InputError, check_new_directory, check_not_overwriting, new_directory
from longseq.core.registry import from_pretrained
from longseq.core.train import OptimizerConfig, TrainerConfig, build_trainer, fit
from longseq.speech.codecs import load_codec
from longseq.speech.codecs.mel import MelCodec
from longseq.speech.data.codes import EncodedCorpus, encode_corpus
from longseq.speech.data.config import SpeechDataConfig
from longseq.speech.data.manifest import read_manifest
from longseq.speech.models.clam_tts import ClamTTS
from longseq.speech.models.speechssm import SpeechSSM
from longseq.speech.models.valle2 import Valle2
from longseq.speech.tasks.clam import ClamTTSTask
from longseq.speech.tasks.codec import MelCodecTask
from longseq.speech.tasks.data import AudioCrops, CodeUtterances, ResumableDataModule, collate_utterances
from longseq.speech.tasks.speechssm import CodeSegments, SpeechSSMTask
from longseq.speech.tasks.valle import Valle2Task
from longseq.speech.text.vallex import VallexTokenizer

# Models trained on codec codes, saved with their codec beside them.
LANGUAGE_MODELS = (Valle2, ClamTTS, SpeechSSM)


def train_model(
    model_name: str,
    output: str | os.PathLike,
    *,
    trainer: TrainerConfig,
    optimizer: OptimizerConfig,
    data: SpeechDataConfig,
    codec: str | None,
    codec_weights: str | None,
    overrides: dict,
) -> Path:
    """Train (or fine-tune, when ``model_name`` is a checkpoint) and save to ``output``.

    Raises:
        InputError, CheckpointError: bad input (one line), before any training step.
    """
    output = Path(output)
    if data.corpus is None:
        raise InputError("give the corpus to train on: --data.corpus DIR (audio) or FILE.safetensors (tts encode)")
    check_not_overwriting(output, data.corpus, model_name, codec)
    check_new_directory(output)  # before any work, not after it
    trainer.check_outside(output)
    lightning = build_trainer(trainer)  # seeds everything first, so that a fresh model is the same each run
    model = from_pretrained(model_name, **overrides)
    if isinstance(model, LANGUAGE_MODELS) and Path(model_name).is_dir():
        # A codec the checkpoint names by a relative directory lives inside the checkpoint.
        relative = Path(model_name) / model.config.codec
        if not Path(model.config.codec).is_absolute() and relative.is_dir():
            model.config.codec = str(relative)
    if isinstance(model, MelCodec):
        task, datamodule = _codec_setup(model, trainer, optimizer, data)
    elif isinstance(model, Valle2):
        task, datamodule, codec = _valle_setup(model, trainer, optimizer, data, codec, codec_weights)
    elif isinstance(model, ClamTTS):
        task, datamodule, codec = _clam_setup(model, trainer, optimizer, data, codec, codec_weights)
    elif isinstance(model, SpeechSSM):
        task, datamodule, codec = _speechssm_setup(model, trainer, optimizer, data, codec, codec_weights)
    else:
        raise CheckpointError(f"{model_name} holds a {type(model).__name__}, which tts train cannot train")
    with new_directory(output):
        fit(lightning, task, datamodule, resume=trainer.resume)
        model.eval()
        if lightning.global_rank == 0:
            if isinstance(model, LANGUAGE_MODELS) and Path(codec).is_dir():
                shutil.copytree(codec, output / "codec")
                model.config.codec = "codec"
            model.save_pretrained(output)
    return output


# At most this many items in an epoch: the sampler holds a permutation of them (a run of a hundred million steps
# would not fit in memory; a longer run takes several epochs).
MAX_EPOCH_ITEMS = 2**20


def _epoch_items(trainer: TrainerConfig, batch_size: int) -> int | None:
    """Items in a run of ``max_steps`` as one epoch, at most `MAX_EPOCH_ITEMS` (None: the run counts epochs)."""
    return min(trainer.max_steps * batch_size, MAX_EPOCH_ITEMS) if trainer.max_steps > 0 else None


def _passes(trainer: TrainerConfig, batch_size: int, items: int) -> int:
    """Times one epoch visits each of ``items`` so that the run is one epoch (see `_epoch_items`)."""
    return max(1, (_epoch_items(trainer, batch_size) or 0) // items)


def _codec_setup(model: MelCodec, trainer: TrainerConfig, optimizer: OptimizerConfig, data: SpeechDataConfig):
    if Path(data.corpus).suffix == ".safetensors":
        raise InputError(f"a codec trains on audio; {data.corpus} holds codes (give the audio corpus)")
    utterances = read_manifest(data.corpus)
    train = [u for u in utterances if u.split == "train"] or utterances
    heldout = [u for u in utterances if u.split != "train"]
    segment = int(data.crop_seconds * model.sample_rate)
    shortest = max(model.config.n_fft, 2 * model.samples_per_frame)
    if segment < shortest:
        raise InputError(
            f"--data.crop_seconds {data.crop_seconds:g} is too short for this codec: at least "
            f"{shortest / model.sample_rate:.3f} s"
        )
    crops = {"sample_rate": model.sample_rate, "segment": segment, "seed": trainer.seed}
    datamodule = ResumableDataModule(
        AudioCrops(train, crops_per_utterance=_passes(trainer, data.batch_size, len(train)), **crops),
        AudioCrops(heldout, **crops) if heldout else None,
        batch_size=data.batch_size,
        seed=trainer.seed,
    )
    return MelCodecTask(model, optimizer=optimizer), datamodule


def _valle_setup(model: Valle2, trainer, optimizer, data: SpeechDataConfig, codec, codec_weights):
    encoded, codec = _model_codes(model, data, codec, codec_weights)
    datamodule = _utterance_data(model, encoded, trainer, data, group_size=model.config.group_size)
    return Valle2Task(model, frame_rate=encoded.frame_rate, optimizer=optimizer), datamodule, codec


def _model_codes(model, data: SpeechDataConfig, codec: str | None, codec_weights) -> tuple[EncodedCorpus, str]:
    """The encoded corpus and the codec spec for a language model (which then names that codec).

    An encoded corpus is read as it is; an audio corpus is encoded now with ``codec`` (default: the model's).
    """
    path = Path(data.corpus)
    if path.suffix == ".safetensors":
        encoded = EncodedCorpus.load(path)
        if codec is not None and not _same_codec(encoded.codec, codec):
            raise InputError(f"{path} was encoded with the codec {encoded.codec!r}, not with --codec {codec!r}")
    else:
        spec = codec or model.config.codec
        encoded = encode_corpus(read_manifest(path), load_codec(spec, encodec_weights=codec_weights), spec)
    codec = codec or encoded.codec
    model.config.codec = codec
    if max(int(c.max()) for c in encoded.codes) >= model.config.codebook_size:
        raise InputError(f"the corpus codes exceed the model's codebook size {model.config.codebook_size}")
    return encoded, codec


def _same_codec(a: str, b: str) -> bool:
    """Whether two codec specs name the same codec (directories compared by where they are)."""
    return Path(a).resolve() == Path(b).resolve() if Path(a).is_dir() and Path(b).is_dir() else a == b


def _utterance_data(
    model, encoded: EncodedCorpus, trainer: TrainerConfig, data: SpeechDataConfig, *, group_size: int
) -> ResumableDataModule:
    """Utterances (text, codes) of the training split, a ``pair_probability`` share of them preceded by another
    of the same speaker (`CodeUtterances`); validation on the held-out speakers' single utterances."""
    max_frames = int(data.max_seconds * encoded.frame_rate)
    if max_frames < max(2, group_size):
        raise InputError(f"--data.max_seconds {data.max_seconds:g} holds fewer than {max(2, group_size)} codec frames")
    size = {
        "n_codebooks": model.config.n_codebooks,
        "group_size": group_size,
        "max_frames": max_frames,
        "language": data.language,
    }
    tokenizer = model.config.text_tokenizer()
    if data.language != "auto" and not isinstance(tokenizer, VallexTokenizer):
        raise InputError(f"--data.language is for VALL-E X models; this model reads {tokenizer.kind} tokens")
    train_ids = encoded.indices("train") or list(range(len(encoded)))
    heldout = encoded.indices("test_speaker")
    # With pairs, one epoch spans the whole run (every utterance once per pass), so that each visit of an
    # utterance draws its own partner.
    passes = _passes(trainer, data.batch_size, len(train_ids)) if data.pair_probability > 0 else 1
    pairs = {"pair_probability": data.pair_probability, "passes": passes, "seed": trainer.seed}
    return ResumableDataModule(
        CodeUtterances(encoded, train_ids, tokenizer, **size, **pairs),
        CodeUtterances(encoded, heldout, tokenizer, **size) if heldout else None,
        batch_size=data.batch_size,
        seed=trainer.seed,
        collate_fn=collate_utterances,
    )


def _clam_setup(model: ClamTTS, trainer, optimizer, data: SpeechDataConfig, codec, codec_weights):
    """The latent LM learns on codes of its Mel-VAE, whose quantizer it copies (frozen)."""
    encoded, codec = _model_codes(model, data, codec, codec_weights)
    model.attach_codec(load_codec(codec, encodec_weights=codec_weights))
    datamodule = _utterance_data(model, encoded, trainer, data, group_size=1)
    return ClamTTSTask(model, optimizer=optimizer), datamodule, codec


def _speechssm_setup(model: SpeechSSM, trainer, optimizer, data: SpeechDataConfig, codec, codec_weights):
    """Fixed-length segments (``model.config.segment_seconds``) of the training speakers' streams, as many as the
    run takes (one epoch)."""
    encoded, codec = _model_codes(model, data, codec, codec_weights)
    size = {
        "n_codebooks": model.config.n_codebooks,
        "segment_frames": round(model.config.segment_seconds * encoded.frame_rate),
        "seed": trainer.seed,
    }
    train_ids = encoded.indices("train") or list(range(len(encoded)))
    heldout = encoded.indices("test_speaker")
    datamodule = ResumableDataModule(
        CodeSegments(encoded, train_ids, **size, length=_epoch_items(trainer, data.batch_size)),
        CodeSegments(encoded, heldout, **size) if heldout else None,
        batch_size=data.batch_size,
        seed=trainer.seed,
    )
    return SpeechSSMTask(model, optimizer=optimizer), datamodule, codec
