"""Training CLaM-TTS's latent language model: the negative variational bound of the mixture-of-Gaussians head
plus the end-of-speech classifier, teacher-forced (the Mel-VAE stays frozen).

Items are utterances and, for a share of them, pairs: two utterances of one speaker in a row with their texts
joined (`speech.tasks.data.CodeUtterances`), the setting of prompted synthesis, so that the end classifier
learns that the end of one utterance's audio is not the end of speech while text remains. The loss covers the
whole pair, as it covers a whole utterance: the latent LM, like VALL-E's AR, is a continuation model trained
on whole sequences without a prompt/target split (only VALL-E 2's NAR, which takes its prompt as a condition,
leaves the prompt out of its loss); the first utterance is ordinary speech for the first part of the text, and
the lesson that matters, no end after it, is the end-classifier target at the junction, which belongs to the
second part.
"""

from __future__ import annotations

import torch

from longseq.speech.tasks.utterance_task import UtteranceTask


class ClamTTSTask(UtteranceTask):
    """Batches come from `speech.tasks.data.collate_utterances`."""

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.losses(batch["text"], batch["text_lens"], batch["codes"], batch["code_lens"])
