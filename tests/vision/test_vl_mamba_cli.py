"""LLaVA-style VQA records and `vision make-vqa-data / train-vlm / vqa` end to end on a tiny model."""

import json

import pytest
import torch

from longseq.core.io import InputError
from longseq.vision.cli import main
from longseq.vision.vl_mamba.data import collate, encode_conversation, load_image, read_jsonl
from longseq.vision.vl_mamba.model import IGNORE_INDEX, IMAGE_TOKEN
from longseq.vision.vl_mamba.tokenizer import WordTokenizer
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
    assert main(["make-vqa-data", "--out", str(root / "data"), "--data_dir", str(root / "fmnist"),
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


def test_two_stage_training_resume_and_vqa(vqa_dir, tmp_path, capsys):
    data = ["--data.train", vqa_dir / "train.jsonl", "--data.batch_size", "8", "--data.val_size", "8"]
    common = ["--trainer.logger", "none", "--trainer.log_dir", tmp_path]
    align, instruct = tmp_path / "align", tmp_path / "instruct"
    ckpt = tmp_path / "ckpt"
    run_ok(["train-vlm", *data, "--out", align, "--model", "vl-mamba-test", "--connector", "vss-l2", "--scan", "csm",
            "--trainer.max_steps", "2", "--trainer.checkpoint_dir", ckpt, *common], capsys)  # fmt: skip
    assert (ckpt / "last.ckpt").is_file()
    out = run_ok(["train-vlm", *data, "--out", align, "--model", "vl-mamba-test", "--connector", "vss-l2",
                  "--scan", "csm", "--trainer.max_steps", "3", "--trainer.checkpoint_dir", ckpt, "--resume", "last",
                  *common], capsys)  # fmt: skip
    assert "align: validation loss" in out
    run_ok(["train-vlm", *data, "--out", instruct, "--model", align, "--stage", "instruct",
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

    run_bad(["vqa", "--model", instruct, "--image", vqa_dir / "train.jsonl", "--question", "what?"], capsys,
            "cannot read")  # fmt: skip
    run_bad(["vqa", "--model", instruct, "--image", image, "--question", " "], capsys, "question is empty")
    run_bad(["vqa", "--model", tmp_path / "none", "--image", image, "--question", "what?"], capsys, "no such model")
    run_bad(["vqa", "--model", instruct, "--image", image, "--question", "what?", "--top_p", "0"], capsys, "top_p")
    run_bad(["train-vlm", *data, "--out", tmp_path / "x", "--model", instruct, "--lm", tmp_path], capsys,
            "apply to presets")  # fmt: skip
    run_bad(["train-vlm", *data, "--out", tmp_path / "x", "--model", "vl-mamba-huge"], capsys, "neither a VL-Mamba")
    run_bad(["train-vlm", "--data.train", tmp_path / "none.jsonl", "--out", tmp_path / "x"], capsys, "no such JSONL")
    assert not (tmp_path / "x").exists()
