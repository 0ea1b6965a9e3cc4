"""Real-time factor of VALL-E 2 synthesis on the CPU for group sizes G = 1, 2, 4, side by side in one run.

Each G generates the same number of frames (EOS suppressed until then) from the same text and 3-s prompt;
the AR decoder takes one step per group, so its steps fall by G. Times are medians over repeats.

    python -m benchmarks.speech_rtf --model examples/speech_model --seconds 5 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from longseq.core.registry import from_pretrained
from longseq.speech.audio import load_audio
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.synthesis import load_model_and_codec

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "examples" / "speech" / "LJ049-0124.wav"
PROMPT_TEXT = "In addition, the proposed legislation will insure."
TEXT = "Alice was beginning to get very tired of sitting by her sister on the bank."


def run_once(model, codec, ids, prompt, frames: int) -> dict[str, float]:
    steps = []
    hook = model.ar.decoder.register_forward_hook(lambda *args: steps.append(1))
    sampling = SamplingConfig(top_p=0.8)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    first = model.ar.generate(
        ids, prompt[:, 0], max_frames=frames, min_frames=frames, sampling=sampling, generator=generator
    )
    ar = time.perf_counter()
    codes = model.nar.generate(ids, prompt, first)
    nar = time.perf_counter()
    wav = codec.decode(codes)
    end = time.perf_counter()
    hook.remove()
    seconds = wav.shape[-1] / codec.sample_rate
    return {
        "steps": len(steps),
        "ar": ar - start,
        "nar": nar - ar,
        "decode": end - nar,
        "total": end - start,
        "audio": seconds,
        "rtf": (end - start) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "examples" / "speech_model"))
    parser.add_argument("--seconds", type=float, default=5.0, help="audio generated per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--groups", default="1,2,4")
    args = parser.parse_args()

    base, codec = load_model_and_codec(args.model)
    tokenizer = base.config.text_tokenizer()
    ids = torch.tensor([tokenizer.encode(PROMPT_TEXT + " " + TEXT)])
    frames = int(args.seconds * codec.frame_rate)
    prompt_wav = load_audio(PROMPT, codec.sample_rate)[:, : 3 * codec.sample_rate]
    rows = []
    for g in [int(x) for x in args.groups.split(",")]:
        model = base if g == base.config.group_size else from_pretrained(args.model, group_size=g)
        prompt = codec.encode(prompt_wav)[:, : model.config.n_codebooks]
        prompt = prompt[..., prompt.shape[-1] % g :]
        frames_g = frames - frames % g
        with torch.no_grad():
            run_once(model, codec, ids, prompt, frames_g)  # warm-up
            runs = [run_once(model, codec, ids, prompt, frames_g) for _ in range(args.repeats)]
        rows.append((g, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))

    print(
        f"VALL-E 2 synthesis, {frames} frames ({args.seconds:g} s) after a 3-s prompt, {torch.get_num_threads()} "
        f"threads, median of {args.repeats}"
    )
    print("| G | AR steps | AR s | NAR s | decode s | total s | RTF | AR speed-up vs G=1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ar1 = rows[0][1]["ar"]
    for g, r in rows:
        print(
            f"| {g} | {r['steps']:.0f} | {r['ar']:.2f} | {r['nar']:.2f} | {r['decode']:.2f} | {r['total']:.2f} "
            f"| {r['rtf']:.3f} | {ar1 / r['ar']:.2f}x |"
        )


if __name__ == "__main__":
    main()
