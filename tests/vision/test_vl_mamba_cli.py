"""LLaVA-style VQA records and `vision make-vqa-data / train-vlm / vqa` end to end on a tiny model: exact resume,
bad inputs (one line, exit 2, nothing written)."""

import json
from pathlib import Path

import pytest
import torch

import longseq
from longseq.core.io import InputError
from longseq.vision.cli import main
from longseq.vision.vl_mamba.data import collate, encode_conversation, load_image, read_jsonl
from longseq.vision.vl_mamba.model import IGNORE_INDEX, IMAGE_TOKEN
from longseq.vision.vl_mamba.tokenizer import WordTokenizer
from tests.resume_harness import check_resume
from tests.vision.test_classify import _fake_fashion_mnist


def run_ok(argv, capsys) -> str:
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def run_bad(argv, capsys, message):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa")
    (root / "fmnist").mkdir()
    _fake_fashion_mnist(root / "fmnist", n=12)
    assert main(["make-vqa-data", "--output", str(root / "data"), "--data_dir", str(root / "fmnist"),
                 "--fashion_train", "12", "--fashion_test", "4", "--digits_test", "1780"]) == 0  # fmt: skip
    return root / "data"


def test_make_vqa_data_writes_llava_records(vqa_dir):
    train = read_jsonl(vqa_dir / "train.jsonl")
    assert len(train) == 2 * (12 + 17)  # two questions per image
    kinds = {json.loads(line)["kind"] for line in (vqa_dir / "train.jsonl").read_text().splitlines()}
    assert kinds == {"item", "category", "digit", "parity"}
    record = next(r for r in train if r.question == "is the digit even or odd?")
    assert record.answer in ("even", "odd") and record.image.is_file()


def test_conversation_encoding_and_batches(vqa_dir):
    records = read_jsonl(vqa_dir / "train.jsonl")[:3]
    tokenizer = WordTokenizer.build([t for r in records for _, t in r.conversations] + ["question: answer:"])
    ids, labels = encode_conversation(tokenizer, records[0].conversations)
    assert ids[0] == IMAGE_TOKEN and ids[-1] == tokenizer.eos_id
    answer = tokenizer.encode(records[0].answer) + [tokenizer.eos_id]
    assert labels[-len(answer) :] == answer and set(labels[: -len(answer)]) == {IGNORE_INDEX}
    image = load_image(records[0].image, size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)
    long, short = (
        (image, torch.tensor(ids), torch.tensor(labels)),
        (image, torch.tensor(ids[:4]), torch.tensor(labels[:4])),
    )
    batch = collate([long, short], pad_id=0)
    assert batch[0].shape == (2, 3, 16, 16) and batch[1][1, 4:].eq(0).all() and batch[2][1, 4:].eq(IGNORE_INDEX).all()


def test_bad_records_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    cases = {
        "{not json": "not JSON",
        '{"conversations": []}': "needs an 'image'",
        '{"image": "a.png", "conversations": [{"from": "human", "value": "<image> hi"}]}': "turn pairs",
        '{"image": "a.png", "conversations": [{"from": "gpt", "value": "<image> hi"}, {"from": "gpt", "value": "x"}]}': "turn 0",  # noqa: E501
        '{"image": "a.png", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}]}': "placeholder",  # noqa: E501
        '{"image": "a.png", "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]}': "empty",  # noqa: E501
    }
    for line, message in cases.items():
        path.write_text('\n{"image": "ok.png", "conversations": [{"from": "human", "value": "<image> q"}, '
                        '{"from": "gpt", "value": "a"}]}\n' + line + "\n")  # fmt: skip
        with pytest.raises(InputError, match=message) as err:
            read_jsonl(path)
        assert "bad.jsonl:3" in str(err.value)
    with pytest.raises(InputError, match="cannot read"):
        load_image(path, size=(8, 8), mean=(0,) * 3, std=(1,) * 3)


def test_two_stage_training_and_vqa(vqa_dir, tmp_path, capsys):
    data = ["--data.train", vqa_dir / "train.jsonl", "--data.batch_size", "8", "--data.val_size", "8"]
    common = ["--trainer.logger", "none", "--trainer.log_dir", tmp_path]
    align, instruct = tmp_path / "align", tmp_path / "instruct"
    out = run_ok(["train-vlm", *data, "--output", align, "--model", "vl-mamba-test", "--connector", "vss-l2",
                  "--scan", "csm", "--trainer.max_steps", "2", *common], capsys)  # fmt: skip
    assert "align: validation loss" in out
    run_ok(["train-vlm", *data, "--output", instruct, "--model", align, "--stage", "instruct",
            "--trainer.max_steps", "2", *common], capsys)  # fmt: skip
    config = json.loads((instruct / "config.json").read_text())
    assert config["connector"] == "vss-l2" and config["scan"] == "csm"
    image = read_jsonl(vqa_dir / "test.jsonl")[0].image
    answer = run_ok(["vqa", "--model", instruct, "--image", image, "--question", "what item is this?",
                     "--max_new_tokens", "3"], capsys)  # fmt: skip
    assert 0 < len(answer.strip().split()) <= 3
    sample = ["vqa", "--model", instruct, "--image", image, "--question", "what item is this?", "--do_sample", "true",
              "--top_k", "5", "--top_p", "0.9", "--temperature", "1.5", "--seed"]  # fmt: skip
    assert run_ok([*sample, "1"], capsys) == run_ok([*sample, "1"], capsys)  # seeded sampling repeats
    written = run_ok([*sample, "1", "--output", tmp_path / "answer.txt"], capsys)
    assert (tmp_path / "answer.txt").read_text() == written
    run_bad([*sample, "1", "--output", image], capsys, "would overwrite the input")


def test_train_vlm_resumes_exactly(vqa_dir, tmp_path, monkeypatch):
    def command(output, steps):
        return ["train-vlm", "--output", output, "--model", "vl-mamba-test", "--data.train", vqa_dir / "train.jsonl",
                "--data.batch_size", "4", "--data.val_size", "4", "--trainer.max_steps", steps,
                "--trainer.progress_bar", "false"]  # fmt: skip

    check_resume(main, command, lambda output: ["--model", output], tmp_path, monkeypatch)


def test_train_vlm_prints_its_config(capsys):
    assert main(["train-vlm", "--trainer.max_steps", "7", "--print_config"]) == 0
    assert "  max_steps: 7" in capsys.readouterr().out.splitlines()


@pytest.fixture(scope="module")
def trained(vqa_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "model"
    argv = ["train-vlm", "--data.train", vqa_dir / "train.jsonl", "--data.batch_size", "8", "--data.val_size", "8",
            "--output", out, "--model", "vl-mamba-test", "--trainer.max_steps", "1",
            "--trainer.logger", "none"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return out


def _bad_inputs(tmp_path: Path, vqa_dir: Path) -> dict[str, Path]:
    """Files a careless user might hand over."""
    names = {"none": "none", "binary": "binary.jsonl", "empty": "empty.jsonl", "file": "file", "lm": "lm",
             "long": "long.jsonl", "noimage": "noimage.jsonl", "few": "few.jsonl"}  # fmt: skip
    paths = {key: tmp_path / name for key, name in names.items()} | {"train": vqa_dir / "train.jsonl"}
    paths["binary"].write_bytes(b"\x00\xff\xfe binary")
    paths["empty"].write_text("")
    paths["file"].write_text("keep me")
    record = json.loads((vqa_dir / "train.jsonl").read_text().splitlines()[0])
    record["image"] = str(vqa_dir / record["image"])
    long = {**record, "conversations": [record["conversations"][0], {"from": "gpt", "value": "bag " * 3000}]}
    paths["long"].write_text((json.dumps(long) + "\n") * 10)
    paths["noimage"].write_text((json.dumps({**record, "image": "missing.png"}) + "\n") * 10)
    paths["few"].write_text((json.dumps(record) + "\n") * 3)
    longseq.from_pretrained("mamba-tiny").save_pretrained(paths["lm"])
    return paths


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data.train", "{none}.jsonl"], "no such JSONL file"),
        (["--data.train", "{binary}"], "is not UTF-8 text"),
        (["--data.train", "{empty}"], "holds no records"),
        (["--data.train", "{long}"], "the model's context is 2048"),
        (["--data.train", "{noimage}"], "no such image"),
        (["--data.batch_size", "0"], "val_size and batch_size must be >= 1"),
        (["--data.train", "{few}"], "3 records are too few to hold some out"),
        (["--trainer.max_steps", "0"], "max_steps must be positive"),
        (["--model", "vl-mamba-huge"], "neither a VL-Mamba"),
        (["--model", "{lm}"], "holds a CausalLM, not a VLMamba"),
        (["--model", "{trained}", "--lm", "{lm}"], "apply to presets"),
        (["--connector", "nope"], "connector"),
        (["--output", "{file}"], "already exists"),
        (["--output", "{trained}"], "would overwrite the input"),
        (["--output", "{train}"], "would overwrite the input"),
        (["--trainer.log_dir", "{out}/logs"], "--trainer.log_dir {out}/logs lies inside --output"),
    ],
)
def test_train_vlm_refuses_bad_input_before_work(vqa_dir, trained, tmp_path, capsys, argv, message):
    paths = {**_bad_inputs(tmp_path, vqa_dir), "trained": trained, "out": tmp_path / "out"}
    if "{trained}" in argv and argv[0] == "--output":
        argv = [*argv, "--model", "{trained}"]
    before = {p: p.read_bytes() for p in [*tmp_path.rglob("*"), *trained.rglob("*")] if p.is_file()}
    default = ["--data.train", vqa_dir / "train.jsonl", "--data.val_size", "4", "--output", tmp_path / "out",
               "--model", "vl-mamba-test", "--trainer.max_steps", "1", "--trainer.logger", "none"]  # fmt: skip
    run_bad(["train-vlm", *default, *[str(a).format(**paths) for a in argv]], capsys, message.format(**paths))
    assert {p: p.read_bytes() for p in [*tmp_path.rglob("*"), *trained.rglob("*")] if p.is_file()} == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max_new_tokens", "1000000000"], "max_new_tokens must lie in [1, 2023]"),  # the hang
        (["--max_new_tokens", "0"], "max_new_tokens must lie in [1,"),
        (["--question", "what " * 3000], "the model's context is 2048"),
        (["--question", " "], "question is empty"),
        (["--image", "{train}"], "cannot read"),
        (["--image", "{none}.png"], "no such image"),
        (["--image", "{big}"], "exceeds limit"),  # over Pillow's decompression-bomb limit
        (["--model", "{none}"], "no such model directory"),
        (["--model", "{lm}"], "holds a CausalLM, not a VLMamba"),
        (["--device", "cuda:7"] if torch.cuda.is_available() else ["--device", "cuda"], "CUDA"),
        (["--device", "tpu"], "unknown device"),
        (["--top_p", "0"], "top_p in (0, 1]"),
        (["--temperature", "0"], "temperature must be positive"),
        (["--seed", "-1"], "seed >= 0"),
    ],
)
def test_vqa_refuses_bad_input(vqa_dir, trained, tmp_path, capsys, monkeypatch, argv, message):
    from PIL import Image

    paths = {**_bad_inputs(tmp_path, vqa_dir), "big": tmp_path / "big.png"}
    Image.new("L", (40, 40)).save(paths["big"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 pixels: Pillow would warn and decode it anyway
    image = read_jsonl(vqa_dir / "test.jsonl")[0].image
    default = ["--model", trained, "--image", image, "--question", "what item is this?"]
    run_bad(["vqa", *default, *[str(a).format(**paths) for a in argv]], capsys, message)


def test_make_vqa_data_refuses_bad_input(vqa_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("keep me")
    fmnist = vqa_dir.parent / "fmnist"
    cases = [
        (["--output", tmp_path / "file"], "already exists"),
        (["--output", vqa_dir], "already exists"),
        (["--output", fmnist], "would overwrite the input"),
        (["--output", tmp_path / "file" / "x"], "is not a writable directory"),
        (["--fashion_train", "-1"], "must be >= 0"),
        (["--digits_test", "5000"], "cannot hold out 5000"),
    ]
    for extra, message in cases:
        run_bad(["make-vqa-data", "--output", tmp_path / "out", "--data_dir", fmnist, *extra], capsys, message)
    assert (tmp_path / "file").read_text() == "keep me" and not (tmp_path / "out").exists()
