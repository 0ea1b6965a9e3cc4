"""Codec round trip on the four real recordings in examples/speech: mel L1 and MCD (DTW) against the original.

python -m benchmarks.speech_codec --codec runs/codec [--codec encodec --codec-weights DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from longseq.speech.audio import load_audio
from longseq.speech.codecs import load_codec
from longseq.speech.eval import mcd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", required=True, help="encodec, encodec-<kbps>kbps or a mel codec directory")
    parser.add_argument("--codec-weights", default=None)
    args = parser.parse_args()
    codec = load_codec(args.codec, encodec_weights=args.codec_weights)
    print(f"codec {args.codec}: {codec.n_codebooks} codebooks x {codec.codebook_size} at {codec.frame_rate:g} Hz")
    print("| recording | seconds | MCD codec (dB) |")
    print("| --- | --- | --- |")
    with torch.no_grad():
        for path in sorted((ROOT / "examples" / "speech").glob("*.wav")):
            wav = load_audio(path, codec.sample_rate)
            out = codec.decode(codec.encode(wav))[0]
            distortion = mcd(wav, codec.sample_rate, out, codec.sample_rate)
            print(f"| {path.stem} | {wav.shape[-1] / codec.sample_rate:.2f} | {distortion:.2f} |")


if __name__ == "__main__":
    main()
