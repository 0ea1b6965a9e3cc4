"""CLaM-TTS against VALL-E 2 (or any speech models `tts synth` runs) trained on the same espeak-ng corpus.

For every held-out voice and held-out sentence (as `benchmarks.speech_quality`): synthesis without a prompt and
prompted with one utterance of that voice (and its transcript), then

- mel-cepstral distortion (DTW, `speech.eval.mcd`) against espeak-ng's rendering of the sentence in that voice;
- decoder steps per second of generated speech: forward passes of the models' generating decoders (CLaM-TTS:
  one per frame for all codebooks; VALL-E 2: one AR step per group of codebook-0 codes plus one NAR pass per
  further codebook), counted with forward hooks, so the figure is exact and does not depend on the machine.

    python -m benchmarks.speech_compare --corpus <espeak corpus> --models <clam dir>,<valle dir> --sentences 5

``--min-seconds-per-token 0`` takes the synthesis floor on duration away, to count how often a model ends the
speech at once (EOS first: right after the prompt when prompted) or early (under half of espeak-ng's duration of
the sentence); ``--seeds 0,1`` synthesizes each case twice, ``--prompts 4`` prompts each with 4 utterances of the
voice in turn.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from longseq.core.io import InputError
from longseq.speech.audio import load_audio
from longseq.speech.data.manifest import read_manifest
from longseq.speech.eval import mcd
from longseq.speech.synthesis import SECONDS_PER_TOKEN_MIN, load_model_and_codec, synthesize

# The decoders whose every forward pass is one generation step (the text encoders run once per utterance).
STEP_MODULES = {"ClamTTS": ["decoder"], "Valle2": ["ar.decoder", "nar.decoder"]}


def codebook_perplexity(codes_file: Path) -> list[float]:
    """exp(entropy) of each depth's codes over an encoded corpus (`tts encode`): how many codewords a codec
    really uses."""
    import torch

    from longseq.speech.data.codes import EncodedCorpus

    codes = torch.cat(EncodedCorpus.load(codes_file).codes, dim=-1).long()
    out = []
    for depth in codes:
        p = torch.bincount(depth).float() / len(depth)
        p = p[p > 0]
        out.append(float(torch.exp(-(p * p.log()).sum())))
    return out


def evaluate(model_dir: str, targets: list, prompts: dict, rate: int, *, prompted: bool, seeds, floor) -> dict:
    lm, codec = load_model_and_codec(model_dir)
    steps = []
    for name in STEP_MODULES[type(lm).__name__]:
        lm.get_submodule(name).register_forward_hook(lambda *args: steps.append(1))
    scores, ratios, seconds, failed = [], [], 0.0, 0
    runs = [(seed, t, p) for seed in seeds for t in targets for p in (prompts[t.speaker] if prompted else [None])]
    for seed, target, prompt in runs:
        voice = {"prompt_audio": prompt.audio, "prompt_text": prompt.text} if prompt is not None else {}
        try:
            result = synthesize(lm, codec, target.text, seed=seed, min_seconds_per_token=floor, **voice)
        except InputError:  # the model ended the speech before it began: counted, not scored
            failed += 1
            ratios.append(0.0)
            continue
        reference = load_audio(target.audio, rate)
        scores.append(mcd(reference, rate, result.wav, result.sample_rate))
        ratios.append(result.seconds / (reference.shape[-1] / rate))
        seconds += result.seconds
    return {
        "model": type(lm).__name__,
        "codec": f"{codec.n_codebooks} x {codec.codebook_size} at {codec.frame_rate:g} Hz",
        "mcd": scores,
        "failed": failed,
        "runs": len(runs),
        "duration_ratio": statistics.median(ratios),
        "short": sum(r < 0.5 for r in ratios),
        "steps_per_second": len(steps) / seconds if seconds else float("nan"),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--models", required=True, help="comma-separated checkpoint directories")
    parser.add_argument("--sentences", type=int, default=5, help="held-out sentences per held-out voice")
    parser.add_argument("--seeds", default="0", help="comma-separated sampling seeds: one synthesis each")
    parser.add_argument("--prompts", type=int, default=1, help="prompt utterances per held-out voice")
    parser.add_argument(
        "--min-seconds-per-token",
        type=float,
        default=SECONDS_PER_TOKEN_MIN,
        help="synthesis duration floor (0: none, EOS may end the speech right after the prompt)",
    )
    parser.add_argument("--codes", default="", help="comma-separated encoded corpora: codebook perplexity of each")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    utterances = read_manifest(args.corpus)
    voices = sorted({u.speaker for u in utterances if u.split == "test_sentence"})
    prompts = {
        v: [u for u in utterances if u.speaker == v and u.split == "test_speaker"][: args.prompts] for v in voices
    }
    targets = [
        u
        for v in voices
        for u in [u for u in utterances if u.speaker == v and u.split == "test_sentence"][: args.sentences]
    ]
    print(f"{len(voices)} held-out voices x {len(targets) // len(voices)} held-out sentences")
    print(
        f"seeds {seeds}, {args.prompts} prompt(s) per voice, "
        f"duration floor {args.min_seconds_per_token:g} s per text token"
    )
    print(
        "| model | codec | prompt | MCD (dB) mean ± std | no speech (EOS first) | under half espeak's duration "
        "| median duration / espeak's | decoder steps per s of speech |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for model_dir in args.models.split(","):
        for prompted in (False, True):
            r = evaluate(
                model_dir, targets, prompts, 24_000, prompted=prompted, seeds=seeds, floor=args.min_seconds_per_token
            )
            mean = statistics.mean(r["mcd"]) if r["mcd"] else float("nan")
            spread = statistics.stdev(r["mcd"]) if len(r["mcd"]) > 1 else 0.0
            print(
                f"| {r['model']} ({Path(model_dir).name}) | {r['codec']} | {'yes' if prompted else 'no'} | "
                f"{mean:.2f} ± {spread:.2f} | {r['failed']} / {r['runs']} | {r['short']} / {r['runs']} | "
                f"{r['duration_ratio']:.2f} | "
                f"{r['steps_per_second']:.1f} |",
                flush=True,
            )
    for codes_file in filter(None, args.codes.split(",")):
        usage = " / ".join(f"{x:.1f}" for x in codebook_perplexity(Path(codes_file)))
        print(f"codebook perplexity per depth of the codes in {codes_file}: {usage}")


if __name__ == "__main__":
    main()
