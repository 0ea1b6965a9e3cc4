"""Real-time factor of VALL-E 2 synthesis on the CPU for group sizes G = 1, 2, 4, side by side in one run.

Each G generates the same number of frames (EOS suppressed until then) from the same text and 3-s prompt;
the AR decoder takes one step per group, so its steps fall by G. Times are medians over repeats.

    python -m benchmarks.speech_rtf --model examples/speech_model --seconds 5 --repeats 5

The released VALL-E X architecture (random weights: the preset ``valle-x``, its text front end and languages;
EnCodec built with random weights, which decodes in the same time as the official ones):

    python -m benchmarks.speech_rtf --model valle-x --random-codec --groups 1,2,4,8 --seconds 3 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from longseq.core.registry import from_pretrained
from longseq.speech.audio import load_audio
from longseq.speech.codecs.encodec import EncodecCodec
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.synthesis import load_model_and_codec
from longseq.speech.text.vallex import LANGUAGE_IDS, VallexTokenizer

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "examples" / "speech" / "LJ049-0124.wav"
PROMPT_TEXT = "In addition, the proposed legislation will insure."
TEXT = "Alice was beginning to get very tired of sitting by her sister on the bank."


def text_ids(tokenizer) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prompt's transcript then the text: ids (1, L) and, for VALL-E X's front end, languages (1, L)."""
    if not isinstance(tokenizer, VallexTokenizer):
        return torch.tensor([tokenizer.encode(PROMPT_TEXT + " " + TEXT)]), None
    prompt, target = tokenizer.encode_prompt(PROMPT_TEXT), tokenizer.encode(TEXT, "en")
    languages = [LANGUAGE_IDS[prompt.language]] * len(prompt.ids) + target.language_ids
    return torch.tensor([prompt.ids + target.ids]), torch.tensor([languages])


def run_once(model, codec, ids, prompt, frames: int, languages=None) -> dict[str, float]:
    steps = []
    hook = model.ar.decoder.register_forward_hook(lambda *args: steps.append(1))
    sampling = SamplingConfig(top_p=0.8)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    first = model.ar.generate(
        ids,
        prompt[:, 0],
        max_frames=frames,
        min_frames=frames,
        sampling=sampling,
        languages=languages,
        generator=generator,
    )
    ar = time.perf_counter()
    codes = model.nar.generate(ids, prompt, first, languages)
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
    parser.add_argument("--random-codec", action="store_true", help="EnCodec with random weights (no file needed)")
    args = parser.parse_args()

    if args.random_codec:
        base, codec = from_pretrained(args.model), EncodecCodec(pretrained=False)
    else:
        base, codec = load_model_and_codec(args.model)
    ids, languages = text_ids(base.config.text_tokenizer())
    frames = int(args.seconds * codec.frame_rate)
    prompt_wav = load_audio(PROMPT, codec.sample_rate)[:, : 3 * codec.sample_rate]
    size = sum(p.numel() for p in base.parameters()) / 1e6
    print(
        f"VALL-E 2 synthesis ({args.model}, {size:.0f} M parameters), {frames} frames ({args.seconds:g} s) after a "
        f"3-s prompt, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print("| G | AR steps | AR s | NAR s | decode s | total s | RTF | AR speed-up vs G=1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    ar1 = None
    for g in [int(x) for x in args.groups.split(",")]:
        model = base if g == base.config.group_size else from_pretrained(args.model, group_size=g)
        prompt = codec.encode(prompt_wav)[:, : model.config.n_codebooks]
        prompt = prompt[..., prompt.shape[-1] % g :]
        frames_g = frames - frames % g
        with torch.no_grad():
            run_once(model, codec, ids, prompt, frames_g, languages)  # warm-up
            runs = [run_once(model, codec, ids, prompt, frames_g, languages) for _ in range(args.repeats)]
        r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        ar1 = ar1 or r["ar"]  # the first G listed is the reference (G=1 by default)
        print(
            f"| {g} | {r['steps']:.0f} | {r['ar']:.2f} | {r['nar']:.2f} | {r['decode']:.2f} | {r['total']:.2f} "
            f"| {r['rtf']:.3f} | {ar1 / r['ar']:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
