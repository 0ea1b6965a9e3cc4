#!/usr/bin/env bash
# Recipe for the bundled speech model (examples/speech_model): an espeak-ng corpus, the mel codec, VALL-E 2 (G = 2).
# On the project's shared 2-core machine: legs 1-3 below at the lowest priority on one core, legs 4 and 5 on both
# (100 and 135 min).
# Usage: examples/train_speech_model.sh WORK_DIR
#
# What is bundled was trained in five legs, the first two cut short by the time available (weights stored in float16):
#   1. on a 1,800-utterance corpus (`tts corpus ... --sentences-per-speaker 50`), --steps 2000 --pair-probability 0
#      (pairs did not exist yet), stopped at step 400;
#   2. `tts train --model <leg 1's model> ... --steps 6000 --lr 1.5e-3 --pair-probability 0`, stopped at step 1600;
#   3. `tts train --model <leg 2's model> ... --steps 2000 --lr 1e-3 --warmup-steps 50` (pairs, the default): done;
#   4. on the 18,000-utterance corpus below (the small one was learnt by heart: held-out loss rose while the
#      training loss fell), `tts train --model <leg 3's model> ... --steps 5500 --lr 1e-3`: done;
#   5. from characters to espeak-ng phonemes (text embeddings rebuilt), `tts train --model <leg 4's model>
#      --tokenizer phonemes ... --steps 5500 --lr 1e-3 --val-every 500`: done.
# 15,000 steps in all; the codec is the step-1000 checkpoint of its 2000-step schedule, trained on the small corpus.
# The single command below is the clean version of that chain (phonemes from the start; not run end to end here).
# Export a checkpoint of a stopped run with `tts train ... --resume true --steps <its step>`.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: $0 WORK_DIR}
tts() { python -m longseq.speech.cli "$@"; }
tts corpus --out "$work/espeak" --speakers 40 --sentences-per-speaker 500 --workers 3
tts train --model mel-24k --corpus "$work/espeak" --out "$work/codec" --steps 2000 --batch-size 12 --lr 2e-3 \
  --checkpoint-every 250
tts encode --corpus "$work/espeak" --codec "$work/codec" --out "$work/codes.safetensors"
tts train --model valle2-small --group-size 2 --tokenizer phonemes --corpus "$work/codes.safetensors" \
  --codec "$work/codec" --out examples/speech_model --steps 15000 --batch-size 16 --lr 1.5e-3 --warmup-steps 100 \
  --checkpoint-every 100 --val-every 250 --val-batches 2
rm -rf examples/speech_model/checkpoints examples/speech_model/logs examples/speech_model/codes.safetensors
# float16 files (half the size); loading casts them back into the float32 modules
python -c "from longseq.speech.models import from_pretrained; from longseq.speech.codecs.mel import MelCodec
from_pretrained('examples/speech_model').half().save_pretrained('examples/speech_model')
MelCodec.from_pretrained('examples/speech_model/codec').half().save_pretrained('examples/speech_model/codec')"
