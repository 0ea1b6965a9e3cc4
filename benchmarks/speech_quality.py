"""Speech quality on held-out voices and sentences of an espeak-ng corpus (`tts corpus`).

For each held-out voice: the prompt is one of its utterances (with transcript), the targets are the held-out
sentences (never in training). Mel-cepstral distortion (DTW, `speech.eval.mcd`) against espeak-ng's rendering
of the target sentence in that voice, for:

- ``prompt itself``: the prompt utterance (right voice, wrong words): the baseline a model must beat;
- ``other voice``: the same sentence rendered by another held-out voice (right words, wrong voice);
- ``codec``: the reference through the model's codec (the floor a codec language model can reach);
- ``model, prompted`` and ``model, no prompt``: the model's synthesis with and without the voice prompt.

Words, without a speech recognizer: each utterance is also compared (MCD) with espeak-ng's rendering of every
held-out sentence in that voice, and counts as *identified* when the nearest rendering is of its own sentence
(chance: 1 / sentences). A model that babbles in the right voice scores near chance; one that says the words
scores near the codec.

Then loops: codebook-0 sequences sampled with plain nucleus sampling and with RAS at a low top-p, counting
repeated-token runs (`speech.eval.loop_count`) and generations that hit the length bound.

    python -m benchmarks.speech_quality --corpus data/espeak [--model examples/speech_model]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from longseq.speech.audio import load_audio
from longseq.speech.data.manifest import read_manifest
from longseq.speech.eval import loop_count, mcd
from longseq.speech.models.sampling import SamplingConfig
from longseq.speech.synthesis import SECONDS_PER_TOKEN_LIMIT, load_model_and_codec, synthesize


def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


def identified(wav: torch.Tensor, rate: int, references: list[torch.Tensor], index: int) -> bool:
    """Whether ``wav`` is nearest (MCD) to ``references[index]`` among the 24 kHz renderings ``references``."""
    return int(np.argmin([mcd(ref, 24_000, wav, rate) for ref in references])) == index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", default=None, help="a trained checkpoint (default: baselines only)")
    parser.add_argument("--sentences", type=int, default=10, help="held-out sentences per voice")
    parser.add_argument("--loop-samples", type=int, default=20)
    parser.add_argument("--top-p", type=float, default=0.0, help="nucleus mass for the loop comparison")
    args = parser.parse_args()

    utterances = read_manifest(args.corpus)
    rate = 24_000
    voices = sorted({u.speaker for u in utterances if u.split == "test_sentence"})
    prompts = {v: next(u for u in utterances if u.speaker == v and u.split == "test_speaker") for v in voices}
    targets = {
        v: [u for u in utterances if u.speaker == v and u.split == "test_sentence"][: args.sentences] for v in voices
    }
    scores: dict[str, list[float]] = {"prompt itself": [], "other voice": []}
    lm = codec = None
    if args.model:
        lm, codec = load_model_and_codec(args.model)
        for key in ("codec", "model, prompted", "model, no prompt"):
            scores[key] = []
    hits = {key: 0 for key in scores if key != "prompt itself"}
    for i, voice in enumerate(voices):
        other = voices[(i + 1) % len(voices)]
        references = [load_audio(target.audio, rate) for target in targets[voice]]
        for index, (target, ref) in enumerate(zip(targets[voice], references)):
            outputs = {"prompt itself": (load_audio(prompts[voice].audio, rate), rate)}
            twin = next(u for u in targets[other] if u.text == target.text)
            outputs["other voice"] = (load_audio(twin.audio, rate), rate)
            if lm is not None:
                recon = codec.decode(codec.encode(load_audio(target.audio, codec.sample_rate)))[0]
                outputs["codec"] = (recon, codec.sample_rate)
                prompted = synthesize(
                    lm, codec, target.text, prompt_audio=prompts[voice].audio, prompt_text=prompts[voice].text, seed=0
                )
                outputs["model, prompted"] = (prompted.wav, prompted.sample_rate)
                plain = synthesize(lm, codec, target.text, seed=0)
                outputs["model, no prompt"] = (plain.wav, plain.sample_rate)
            for key, (wav, wav_rate) in outputs.items():
                scores[key].append(mcd(ref, rate, wav, wav_rate))
                if key in hits:
                    hits[key] += identified(wav, wav_rate, references, index)
    n = len(scores["prompt itself"])
    print(
        f"MCD (dB) against espeak-ng's rendering, {len(voices)} held-out voices x {n // len(voices)} held-out sentences"
    )
    print("| system | MCD mean ± std | sentence identified |")
    print("| --- | --- | --- |")
    for key, values in scores.items():
        found = f"{hits[key]} / {n}" if key in hits else "-"
        print(f"| {key} | {summary(values)} | {found} |")
    print(f"(identified: nearest of the voice's {n // len(voices)} renderings; chance {len(voices)} / {n})")
    if lm is not None:
        loops(lm, codec, targets, prompts, voices, args)


@torch.no_grad()
def loops(lm, codec, targets, prompts, voices, args) -> None:
    tokenizer = lm.config.text_tokenizer()
    rate = codec.sample_rate
    results = {}
    for name, sampling in {
        "nucleus": SamplingConfig(top_p=args.top_p, ras=False),
        "RAS (paper)": SamplingConfig(top_p=args.top_p, ras=True),
    }.items():
        counts, bounded, lengths = [], 0, []
        for k in range(args.loop_samples):
            voice = voices[k % len(voices)]
            target = targets[voice][k // len(voices) % len(targets[voice])]
            prompt = codec.encode(load_audio(prompts[voice].audio, rate))[:, : lm.config.n_codebooks]
            prompt = prompt[..., prompt.shape[-1] % lm.config.group_size :]
            ids = torch.tensor([tokenizer.encode(prompts[voice].text + " " + target.text)])
            max_frames = int(SECONDS_PER_TOKEN_LIMIT * len(tokenizer.encode(target.text)) * codec.frame_rate)
            generator = torch.Generator().manual_seed(k)
            first = lm.ar.generate(ids, prompt[:, 0], max_frames=max_frames, sampling=sampling, generator=generator)
            tokens = first[0].tolist()
            counts.append(loop_count(tokens))
            bounded += len(tokens) >= max_frames
            lengths.append(len(tokens) / codec.frame_rate)
        results[name] = (sum(counts), bounded, statistics.mean(lengths))
    print(f"\nLoops over {args.loop_samples} samples, top-p {args.top_p}")
    print("| sampling | repeated-token runs | hit the length bound | mean seconds |")
    print("| --- | --- | --- | --- |")
    for name, (runs, bounded, seconds) in results.items():
        print(f"| {name} | {runs} | {bounded} / {args.loop_samples} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
