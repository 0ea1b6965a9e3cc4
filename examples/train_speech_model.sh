#!/usr/bin/env bash
# Recipe for the bundled speech model (examples/speech_model): an espeak-ng corpus, the mel codec, VALL-E 2.
# On the project's 2-core machines run it under /work/bin/cpujob (one core). Usage: train_speech_model.sh WORK_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: $0 WORK_DIR}
tts() { python -m speech.cli "$@"; }
tts corpus --out "$work/espeak" --speakers 40 --sentences-per-speaker 50
tts train --model mel-24k --corpus "$work/espeak" --out "$work/codec" --steps 2000 --batch-size 12 --lr 2e-3 \
  --checkpoint-every 250
tts encode --corpus "$work/espeak" --codec "$work/codec" --out "$work/codes.safetensors"
tts train --model valle2-small --corpus "$work/codes.safetensors" --codec "$work/codec" --out examples/speech_model \
  --steps 3000 --batch-size 16 --lr 1e-3 --warmup-steps 200 --checkpoint-every 250 --val-every 500
rm -rf examples/speech_model/checkpoints examples/speech_model/logs examples/speech_model/codes.safetensors
