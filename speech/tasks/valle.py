"""Training VALL-E 2: the AR and the NAR decoder together, as one model.

Each step: the AR loss (next group of codebook-0 codes, teacher-forced over whole items, EOS after the last
group; a share of the items are two utterances of one speaker in a row, the prompted setting, see
`speech.tasks.data.CodeUtterances` and `speech.tasks.clam`) plus the NAR loss for one random codebook k in
[1, n_q) (VALL-E 2 §3.3.2), with a random acoustic prompt per item: its first T' frames, T' uniform in
[T/4, T/2] and at most ``prompt_seconds`` (lifeiteng/vall-e's prefix mode 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.core.train import OptimizerConfig
from longseq.speech.models.valle2 import IGNORE, Valle2
from longseq.speech.tasks.utterance_task import UtteranceTask


class Valle2Task(UtteranceTask):
    """Batches come from `speech.tasks.data.collate_utterances`.

    Args:
        model: the model to train.
        frame_rate: codec frames per second (to bound the prompt by ``model.config.prompt_seconds``).
    """

    def __init__(self, model: Valle2, *, frame_rate: float, optimizer: OptimizerConfig | None = None):
        super().__init__(model, optimizer=optimizer)
        self.max_prompt = max(1, int(model.config.prompt_seconds * frame_rate))

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        text, text_lens, codes, code_lens = batch["text"], batch["text_lens"], batch["codes"], batch["code_lens"]
        stage = int(torch.randint(1, self.model.config.n_codebooks, ()))
        low, high = code_lens // 4, (code_lens // 2).clamp(min=1)
        uniform = torch.rand(len(code_lens), device=code_lens.device)
        prompt_lens = (low + (uniform * (high - low + 1)).long()).clamp(1, self.max_prompt)
        prompt_lens = torch.minimum(prompt_lens, code_lens - 1)
        languages = batch.get("languages")  # VALL-E X's front end: each text token's language
        logits, targets, nar_logits = self.model(text, text_lens, codes, code_lens, prompt_lens, stage, languages)
        ar_loss = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten(), ignore_index=IGNORE)
        valid = targets != IGNORE
        ar_acc = (logits.argmax(-1) == targets)[valid].float().mean()

        frame = torch.arange(codes.shape[-1], device=codes.device)
        target = (frame >= prompt_lens[:, None]) & (frame < code_lens[:, None])
        nar_targets = torch.where(target, codes[:, stage], IGNORE)
        nar_loss = F.cross_entropy(nar_logits.flatten(0, 1).float(), nar_targets.flatten(), ignore_index=IGNORE)
        nar_acc = (nar_logits.argmax(-1) == codes[:, stage])[target].float().mean()
        return {
            "loss": ar_loss + nar_loss,
            "ar_loss": ar_loss,
            "nar_loss": nar_loss,
            "ar_acc": ar_acc,
            "nar_acc": nar_acc,
        }
