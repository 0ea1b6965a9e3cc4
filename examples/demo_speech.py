"""The speech step of `make demo`: synthesize a sentence with the bundled VALL-E 2 model, plainly and in the
voice of a real 3-s recording, and write the WAVs and a spectrogram."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPT = HERE / "speech" / "LJ049-0124.wav"
PROMPT_TEXT = (HERE / "speech" / "LJ049-0124.txt").read_text().strip()
TEXT = "Alice was beginning to get very tired of sitting by her sister on the bank."


def run(out_dir: Path) -> None:
    from longseq.speech.cli import main

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plain, cloned = out / "speech_plain.wav", out / "speech_prompted.wav"
    common = ["synth", "--seed", "0", "--text", TEXT]
    if main([*common, "--output", str(plain), "--spectrogram", str(out / "speech_plain.png")]) != 0:
        raise SystemExit("speech demo: synthesis failed")
    prompt = ["--prompt-audio", str(PROMPT), "--prompt-text", PROMPT_TEXT]
    if main([*common, "--output", str(cloned), *prompt]) != 0:
        raise SystemExit("speech demo: prompted synthesis failed")
    print(f"speech: wrote {plain} and {cloned} (in the voice of {PROMPT.name}); how well the bundled model says")
    print("  held-out sentences (MCD, sentence identified among 20): benchmarks/RESULTS.md, section speech")


if __name__ == "__main__":
    run(Path("out/demo/speech"))
