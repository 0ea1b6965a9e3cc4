"""The `vision` console script: one subcommand per task (``vision --help`` lists them)."""

from __future__ import annotations

from longseq.core.cli import run
from longseq.vision.commands.btb3d import convert3d, decode3d, tokenize3d, train3d
from longseq.vision.commands.local_mamba import (
    convert,
    eval_classifier,
    extract_directions,
    make_image_folder,
    train_classifier,
)
from longseq.vision.commands.vl_mamba import eval_vqa, make_vqa_data, train_vlm, vqa


def main(argv: list[str] | None = None) -> int:
    return run(
        {
            "tokenize3d": tokenize3d,
            "decode3d": decode3d,
            "convert3d": convert3d,
            "train3d": train3d,
            "convert": convert,
            "extract-directions": extract_directions,
            "make-image-folder": make_image_folder,
            "train-classifier": train_classifier,
            "eval-classifier": eval_classifier,
            "make-vqa-data": make_vqa_data,
            "train-vlm": train_vlm,
            "vqa": vqa,
            "eval-vqa": eval_vqa,
        },
        argv,
        prog="vision",
    )


if __name__ == "__main__":
    raise SystemExit(main())
