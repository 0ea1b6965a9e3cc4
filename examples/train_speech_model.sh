#!/usr/bin/env bash
# Recipe for the bundled speech model (examples/speech_model): an espeak-ng corpus, the mel codec, VALL-E 2 (G = 2).
# On the project's shared 2-core machine: legs 1-3 below at the lowest priority on one core, legs 4 and 5 on both
# (100 and 135 min).
# Usage: examples/train_speech_model.sh WORK_DIR
#
# What is bundled was trained in five legs, the first two cut short by the time available (weights stored in float16;
# flags in today's spelling; the codecs trained without weight decay, as --optimizer.weight_decay 0 below):
#   1. on a 1,800-utterance corpus (`tts corpus ... --sentences-per-speaker 50`), --trainer.max_steps 2000
#      --data.pair_probability 0 (pairs did not exist yet), stopped at step 400;
#   2. `tts train --model <leg 1's model> ... --trainer.max_steps 6000 --optimizer.lr 1.5e-3
#      --data.pair_probability 0`, stopped at step 1600;
#   3. `tts train --model <leg 2's model> ... --trainer.max_steps 2000 --optimizer.lr 1e-3
#      --optimizer.warmup_steps 50` (pairs, the default): done;
#   4. on the 18,000-utterance corpus below (the small one was learnt by heart: held-out loss rose while the
#      training loss fell), `tts train --model <leg 3's model> ... --trainer.max_steps 5500 --optimizer.lr 1e-3`: done;
#   5. from characters to espeak-ng phonemes (text embeddings rebuilt), `tts train --model <leg 4's model>
#      --tokenizer phonemes ... --trainer.max_steps 5500 --optimizer.lr 1e-3 --trainer.val_every_n_batches 500`: done.
# 15,000 steps in all; the codec is the step-1000 checkpoint of its 2000-step schedule, trained on the small corpus.
# The commands below are the clean version of that chain (phonemes from the start; not run end to end here).
# Export a checkpoint of a stopped run with the same command, --trainer.resume last and --trainer.max_steps <its step>.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: $0 WORK_DIR}
tts() { python -m longseq.speech.cli "$@"; }
tts corpus --output "$work/espeak" --speakers 40 --sentences-per-speaker 500 --workers 3
tts train --model mel-24k --data.corpus "$work/espeak" --output "$work/codec" --trainer.max_steps 2000 \
  --data.batch_size 12 --optimizer.lr 2e-3 --optimizer.weight_decay 0 --trainer.log_dir "$work/logs" \
  --trainer.checkpoint_dir "$work/checkpoints/codec" --trainer.checkpoint_every_n_steps 250
tts encode --corpus "$work/espeak" --codec "$work/codec" --output "$work/codes.safetensors"
tts train --model valle2-small --group-size 2 --tokenizer phonemes --data.corpus "$work/codes.safetensors" \
  --codec "$work/codec" --output "$work/tts" --trainer.max_steps 15000 --data.batch_size 16 --optimizer.lr 1.5e-3 \
  --optimizer.warmup_steps 100 --trainer.val_every_n_batches 250 --trainer.limit_val_batches 2 \
  --trainer.log_dir "$work/logs" --trainer.checkpoint_dir "$work/checkpoints/tts" --trainer.checkpoint_every_n_steps 100
# float16 files (half the size); loading casts them back into the float32 modules
rm -rf examples/speech_model
python -c "import sys, longseq
longseq.from_pretrained(sys.argv[1] + '/tts').half().save_pretrained('examples/speech_model')
longseq.from_pretrained(sys.argv[1] + '/tts/codec').half().save_pretrained('examples/speech_model/codec')" "$work"
