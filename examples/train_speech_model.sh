#!/usr/bin/env bash
# Recipe for the bundled speech model (examples/speech_model): an espeak-ng corpus, the mel codec, VALL-E 2 (G = 2).
# On the project's shared 2-core machine it ran at the lowest priority on one core (nice -n 19, OMP_NUM_THREADS=1).
# Usage: examples/train_speech_model.sh WORK_DIR
#
# What is bundled was cut short by the time available: the codec is the step-1000 checkpoint of its 2000-step
# schedule, and the VALL-E 2 model the last checkpoint its run reached (the step: README, Speech). Weights are stored in float16.
# Export a checkpoint of a stopped run with `tts train ... --resume true --steps <its step>`.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: $0 WORK_DIR}
tts() { python -m speech.cli "$@"; }
tts corpus --out "$work/espeak" --speakers 40 --sentences-per-speaker 50
tts train --model mel-24k --corpus "$work/espeak" --out "$work/codec" --steps 2000 --batch-size 12 --lr 2e-3 \
  --checkpoint-every 250
tts encode --corpus "$work/espeak" --codec "$work/codec" --out "$work/codes.safetensors"
tts train --model valle2-small --group-size 2 --corpus "$work/codes.safetensors" --codec "$work/codec" \
  --out examples/speech_model --steps 2000 --batch-size 16 --lr 1.5e-3 --warmup-steps 100 --checkpoint-every 100 \
  --val-every 250 --val-batches 2
rm -rf examples/speech_model/checkpoints examples/speech_model/logs examples/speech_model/codes.safetensors
# float16 files (half the size); loading casts them back into the float32 modules
python -c "from speech.models import from_pretrained; from speech.codecs.mel import MelCodec
from_pretrained('examples/speech_model').half().save_pretrained('examples/speech_model')
MelCodec.from_pretrained('examples/speech_model/codec').half().save_pretrained('examples/speech_model/codec')"
