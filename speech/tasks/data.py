"""Training data for the speech tasks: audio crops (codecs) and text + code utterances (language models).

Random choices (crop offsets) derive from (seed, index) so that an item is the same after a restart
(`core.train`'s exact resume); per-step randomness (NAR stage, prompt split) lives in the tasks, where
`core.train.StepSeed` reseeds the global generators every batch.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from longseq.core.io import InputError
from longseq.core.train import ResumableDataLoader
from longseq.speech.audio import load_audio
from longseq.speech.data.codes import EncodedCorpus
from longseq.speech.data.manifest import Utterance
from longseq.speech.text.tokenizer import PAD, TextTokenizer
from longseq.speech.text.vallex import LANGUAGE_IDS, VallexTokenizer


class AudioCrops(Dataset):
    """Item i: ``segment`` samples (1, segment) of utterance i mod n at an offset fixed by (seed, i).

    ``crops_per_utterance`` makes one epoch visit every utterance that many times at different offsets.
    """

    def __init__(
        self,
        utterances: list[Utterance],
        *,
        sample_rate: int,
        segment: int,
        crops_per_utterance: int = 1,
        seed: int = 0,
    ):
        if not utterances:
            raise InputError("no utterances to train on")
        self.utterances = utterances
        self.sample_rate = sample_rate
        self.segment = segment
        self.crops = crops_per_utterance
        self.seed = seed

    def __len__(self) -> int:
        return len(self.utterances) * self.crops

    def __getitem__(self, index: int) -> torch.Tensor:
        wav = load_audio(self.utterances[index % len(self.utterances)].audio, self.sample_rate)
        spare = wav.shape[-1] - self.segment
        if spare <= 0:
            return F.pad(wav, (0, -spare))
        offset = int(np.random.default_rng([self.seed, index]).integers(0, spare + 1))
        return wav[:, offset : offset + self.segment]


class ResumableDataModule(L.LightningDataModule):
    """Training batches through `core.train.ResumableDataLoader` (exact mid-epoch resume, one shard per rank);
    validation in order. ``collate_fn`` batches items that do not stack as they are (whole utterances)."""

    def __init__(
        self,
        train: Dataset,
        val: Dataset | None,
        *,
        batch_size: int,
        seed: int = 0,
        collate_fn: Callable[[list], object] | None = None,
    ):
        super().__init__()
        if len(train) < batch_size:
            raise InputError(f"{len(train)} training examples are fewer than one batch of {batch_size}")
        self.train, self.val, self.batch_size, self.seed = train, val, batch_size, seed
        self.collate_fn = collate_fn

    def train_dataloader(self) -> ResumableDataLoader:
        return ResumableDataLoader(
            self.train,
            batch_size=self.batch_size,
            seed=self.seed,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            collate_fn=self.collate_fn,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None:
            return []
        return DataLoader(self.val, batch_size=self.batch_size, collate_fn=self.collate_fn)


def encode_text(
    tokenizer: TextTokenizer | VallexTokenizer, text: str, before: str | None = None, *, language: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ids (L,) a model reads for ``text`` preceded by the transcript ``before`` (a pair), as synthesis forms
    them, and for VALL-E X's front end their language rows (L,) (else None).

    VALL-E X: ``before`` is a voice prompt's transcript (`VallexTokenizer.encode_prompt`, all of it in its
    language), ``text`` a target in ``language``. Other tokenizers: the two texts joined by a space.
    """
    if not isinstance(tokenizer, VallexTokenizer):
        return torch.tensor(tokenizer.encode(text if before is None else before + " " + text)), None
    target = tokenizer.encode(text, language)
    ids, languages = target.ids, target.language_ids
    if before is not None:
        prompt = tokenizer.encode_prompt(before)
        ids, languages = prompt.ids + ids, [LANGUAGE_IDS[prompt.language]] * len(prompt.ids) + languages
    return torch.tensor(ids), torch.tensor(languages)


class CodeUtterances(Dataset):
    """Item i: (text ids (L,), codes (n_q, T)) of utterance i mod n, with T a multiple of ``group_size``
    (leading frames clipped) and at most ``max_frames``; with VALL-E X's front end, also the text's language
    rows (L,) (``language``: the transcripts', auto: detected per transcript).

    Prompted synthesis makes the model continue a whole utterance of the voice (the prompt) while speaking the
    prompt's transcript followed by the new text. A model trained on single utterances only learns "the end
    of an utterance's audio is the end of speech" and stops right after the prompt. So with probability
    ``pair_probability`` (fixed by (seed, i)) item i is a *pair*: another utterance of the same speaker
    (drawn by (seed, i)) followed by utterance i, texts joined by a space as synthesis joins them, frames
    concatenated; its one end of speech is after the second utterance. Pairs longer than ``max_frames`` are
    not formed (the single utterance is used). ``passes``: the dataset holds every utterance that many
    times, so that one training run draws different partners for it.
    """

    def __init__(
        self,
        corpus: EncodedCorpus,
        indices: list[int],
        tokenizer: TextTokenizer | VallexTokenizer,
        *,
        n_codebooks: int,
        language: str = "auto",
        group_size: int = 1,
        max_frames: int | None = None,
        pair_probability: float = 0.0,
        passes: int = 1,
        seed: int = 0,
    ):
        if not indices:
            raise InputError("no utterances to train on")
        if not 0.0 <= pair_probability <= 1.0:
            raise InputError(f"the pair probability must lie in [0, 1]; got {pair_probability}")
        have = corpus.codes[indices[0]].shape[0]
        if have < n_codebooks:
            raise InputError(f"the corpus has {have} codebooks; the model needs {n_codebooks}")
        self.codes = [corpus.codes[i][:n_codebooks] for i in indices]
        self.transcripts = [corpus.texts[i] for i in indices]
        self.language = language
        self.texts = [encode_text(tokenizer, t, language=language) for t in self.transcripts]
        self.tokenizer = tokenizer
        self.group_size = group_size
        self.max_frames = max_frames
        self.pair_probability = pair_probability
        self.passes = passes
        self.seed = seed
        speakers = [corpus.speakers[i] for i in indices]
        self.same_speaker = [
            [j for j, s in enumerate(speakers) if s == speaker and j != i] for i, speaker in enumerate(speakers)
        ]

    def __len__(self) -> int:
        return len(self.codes) * self.passes

    def partner(self, index: int) -> int | None:
        """The utterance that precedes item ``index``'s utterance in a pair, or None (a single utterance)."""
        rng = np.random.default_rng([self.seed, index])
        if rng.random() >= self.pair_probability:
            return None
        i = index % len(self.codes)
        room = self.max_frames - self.codes[i].shape[1] if self.max_frames is not None else None
        fits = [j for j in self.same_speaker[i] if room is None or self.codes[j].shape[1] <= room]
        return fits[rng.integers(len(fits))] if fits else None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        i = index % len(self.codes)
        j = self.partner(index)
        if j is None:
            (text, languages), codes = self.texts[i], self.codes[i]
        else:
            before = self.transcripts[j]
            text, languages = encode_text(self.tokenizer, self.transcripts[i], before, language=self.language)
            codes = torch.cat([self.codes[j], self.codes[i]], dim=1)
        if self.max_frames is not None:
            codes = codes[:, : self.max_frames]
        codes = codes[:, codes.shape[1] % self.group_size :]
        return (text, codes) if languages is None else (text, codes, languages)


def collate_utterances(items: list[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
    """Pad texts with PAD and codes with 0: text (b, L), text_lens (b,), codes (b, n_q, T), code_lens (b,);
    items with language rows (VALL-E X) also give languages (b, L), padded with 0."""
    texts, codes, *languages = zip(*items)
    text_lens = torch.tensor([len(t) for t in texts])
    code_lens = torch.tensor([c.shape[1] for c in codes])
    text = torch.full((len(items), int(text_lens.max())), PAD, dtype=torch.long)
    padded = torch.zeros(len(items), codes[0].shape[0], int(code_lens.max()), dtype=torch.long)
    for i, (t, c) in enumerate(zip(texts, codes)):
        text[i, : len(t)] = t
        padded[i, :, : c.shape[1]] = c
    batch = {"text": text, "text_lens": text_lens, "codes": padded, "code_lens": code_lens}
    if languages:
        batch["languages"] = torch.zeros_like(text)
        for i, rows in enumerate(languages[0]):
            batch["languages"][i, : len(rows)] = rows
    return batch
