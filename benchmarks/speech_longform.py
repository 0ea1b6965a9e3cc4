"""SpeechSSM long-form continuation: memory and time per second of audio for 1, 4 and 16 minutes, and
quality statistics minute by minute (does it drift or loop?).

Each length runs in a fresh process (so its peak RSS is its own) through `speech.longform.continue_speech`,
exactly what ``tts synth --minutes`` runs: windowed codec decoding, audio streamed to a WAV file. Per minute of
audio (``--interval``) it records the resident memory at its end, the compute seconds per audio second, the
entropy (bits) of each codebook's codes, the repetition rate (share of frames inside a loop, `speech.eval.loop_count`'s
definition, on codebook 0) and the spectral centroid and flatness of the audio.

    python -m benchmarks.speech_longform --model <speechssm checkpoint> --minutes 1,4,16 \
        --json benchmarks/plots/speechssm_longform.json --plot benchmarks/plots/speechssm_longform.png

Without --model: the speechssm-tiny preset over a mel-tiny codec with random weights. Lengths measured in separate
runs are tabulated and plotted together with ``--load a.json,b.json --plot ...``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """The current resident set size of this process (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def entropy_bits(tokens: np.ndarray, size: int) -> float:
    p = np.bincount(tokens, minlength=size) / len(tokens)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def looped_share(tokens: list[int], *, min_run: int = 8, max_period: int = 4) -> float:
    """The share of tokens inside stretches that repeat with a period <= max_period for >= min_run tokens."""
    covered = np.zeros(len(tokens), dtype=bool)
    for period in range(1, max_period + 1):
        same = np.append(np.array(tokens[period:]) == np.array(tokens[:-period]), False)
        start = None  # tokens[start : i + period] repeat with this period while same[start:i] holds
        for i, equal in enumerate(same):
            if equal and start is None:
                start = i
            elif not equal and start is not None:
                if i - start + period >= min_run:
                    covered[start : i + period] = True
                start = None
    return float(covered.mean())


def spectral_stats(wav: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """Mean spectral centroid (Hz) and flatness (geometric / arithmetic mean power) over 2048-point frames."""
    spec = torch.stft(torch.from_numpy(wav).float(), 2048, 512, window=torch.hann_window(2048), return_complex=True)
    power = spec.abs().pow(2).T.numpy() + 1e-12  # (frames, bins)
    freqs = np.linspace(0, sample_rate / 2, power.shape[1])
    centroid = (power * freqs).sum(1) / power.sum(1)
    flatness = np.exp(np.log(power).mean(1)) / power.mean(1)
    return float(centroid.mean()), float(flatness.mean())


def load(model_dir: str | None):
    from longseq.core.registry import from_pretrained
    from longseq.speech.synthesis import load_model_and_codec

    if model_dir is not None:
        return load_model_and_codec(model_dir)
    torch.manual_seed(0)
    return from_pretrained("speechssm-tiny"), from_pretrained("mel-tiny")


def child(model_dir: str | None, minutes: float, seed: int, interval: float) -> dict:
    """One run in this process: the measurements as a dict."""
    import soundfile as sf

    from longseq.speech.longform import continue_speech
    from longseq.speech.models.sampling import SamplingConfig

    model, codec = load(model_dir)
    per_interval = round(interval * codec.frame_rate)
    k, size = model.config.n_codebooks, model.config.codebook_size
    minute: list[torch.Tensor] = []
    rows: list[dict] = []
    clock = [time.perf_counter()]

    def on_frame(frame: torch.Tensor) -> None:
        minute.append(frame)
        if len(minute) == per_interval:
            codes = torch.stack(minute, -1).numpy()
            now = time.perf_counter()
            rows.append(
                {
                    "minute": (len(rows) + 1) * interval / 60,
                    "rss_mb": rss_mb(),
                    "seconds_per_audio_second": (now - clock[0]) / interval,
                    "entropy_bits": [entropy_bits(codes[j], size) for j in range(k)],
                    "looped": looped_share(codes[0].tolist()),
                }
            )
            clock[0] = now
            minute.clear()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "long.wav"
        start_rss = rss_mb()
        result = continue_speech(
            model, codec, out, minutes=minutes, sampling=SamplingConfig(), seed=seed, progress=False, on_frame=on_frame
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with sf.SoundFile(out) as f:
            for row in rows:
                row["centroid_hz"], row["flatness"] = spectral_stats(
                    f.read(round(interval * f.samplerate)), f.samplerate
                )
    return {
        "minutes": minutes,
        "audio_seconds": result.seconds,
        "compute_seconds": result.elapsed,
        "seconds_per_audio_second": result.rtf,
        "frames": result.frames,
        "codec_windows": result.windows,
        "rss_after_load_mb": start_rss,
        "peak_rss_mb": peak,
        "per_minute": rows,
    }


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for run in runs:
        label = f"{run['minutes']:g} min"
        minutes = [r["minute"] for r in run["per_minute"]]
        axes[0].plot(minutes, [r["rss_mb"] for r in run["per_minute"]], "o-", label=label)
        axes[1].plot(minutes, [r["seconds_per_audio_second"] for r in run["per_minute"]], "o-", label=label)
    axes[0].set(title="resident memory (MB)", xlabel="audio minute", ylim=(0, None))
    axes[1].set(title="compute seconds per audio second", xlabel="audio minute", ylim=(0, None))
    longest = max(runs, key=lambda r: r["minutes"])["per_minute"]
    minutes = [r["minute"] for r in longest]
    for j in range(len(longest[0]["entropy_bits"])):
        axes[2].plot(minutes, [r["entropy_bits"][j] for r in longest], label=f"codebook {j}")
    axes[2].plot(minutes, [8 * r["looped"] for r in longest], "k--", label="looped share x 8")
    axes[2].set(title="tokens per minute (longest run)", xlabel="audio minute", ylabel="entropy (bits)")
    axes[3].plot(minutes, [r["centroid_hz"] for r in longest], "o-", color="C4")
    axes[3].set(title="spectral centroid (Hz; longest run)", xlabel="audio minute")
    twin = axes[3].twinx()
    twin.plot(minutes, [r["flatness"] for r in longest], "s--", color="C5")
    twin.set_ylabel("spectral flatness")
    for ax in axes[:3]:
        ax.legend(fontsize=7)
    fig.suptitle("SpeechSSM continuation (speechssm-tiny, 2-core CPU, torch 2.9.1)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="SpeechSSM checkpoint directory (default: random tiny)")
    parser.add_argument("--minutes", default="1,4,16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds of audio per statistics row")
    parser.add_argument("--json", default=None, help="write all measurements here")
    parser.add_argument("--plot", default=None, help="write the plot (PNG) here")
    parser.add_argument("--load", default=None, help="tabulate and plot these --json files instead of running")
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.model, args.child, args.seed, args.interval)))
        return
    runs = [run for path in args.load.split(",") for run in json.loads(Path(path).read_text())] if args.load else []
    for minutes in [] if args.load else [float(m) for m in args.minutes.split(",")]:
        command = [
            sys.executable,
            "-m",
            "benchmarks.speech_longform",
            "--child",
            str(minutes),
            "--seed",
            str(args.seed),
        ]
        command += ["--interval", str(args.interval)]
        command += [] if args.model is None else ["--model", args.model]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        run = runs[-1]
        print(
            f"{minutes:g} min: {run['audio_seconds']:.0f} s of audio in {run['compute_seconds']:.1f} s "
            f"({run['seconds_per_audio_second']:.3f} s per audio s), peak RSS {run['peak_rss_mb']:.0f} MB "
            f"(after loading {run['rss_after_load_mb']:.0f} MB), {run['codec_windows']} codec windows",
            flush=True,
        )
    print("\n| minutes | audio s | compute s | s per audio s | peak RSS (MB) | RSS at last minute (MB) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for run in runs:
        last = run["per_minute"][-1]["rss_mb"] if run["per_minute"] else math.nan
        print(
            f"| {run['minutes']:g} | {run['audio_seconds']:.0f} | {run['compute_seconds']:.1f} | "
            f"{run['seconds_per_audio_second']:.3f} | {run['peak_rss_mb']:.0f} | {last:.0f} |"
        )
    longest = max(runs, key=lambda r: r["minutes"])["per_minute"]
    print("\n| audio minute (end) | entropy cb0 (bits) | looped share | centroid (Hz) | flatness |")
    print("| --- | --- | --- | --- | --- |")
    for r in longest:
        print(
            f"| {r['minute']:g} | {r['entropy_bits'][0]:.2f} | {r['looped']:.3f} | {r['centroid_hz']:.0f} | "
            f"{r['flatness']:.3f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
