"""`vision eval-vqa` (batched answers, exact match and VQA accuracy per question type) on the offline digits VQA
set, the VQAv2 metric itself, and `vision vqa --history`."""

import json

import pytest
import torch

from longseq.vision.cli import main
from longseq.vision.vl_mamba.data import encode_follow_up, encode_prompt, load_image, read_jsonl
from longseq.vision.vl_mamba.evaluate import answer_batches, normalize_answer, predict, vqa_accuracy
from longseq.vision.vl_mamba.model import VLMamba
from longseq.vision.vl_mamba.tokenizer import load_tokenizer


def test_vqa_metric():
    assert normalize_answer("  The Two dogs!\n") == "2 dogs" and normalize_answer("3.5 m.") == "3.5 m"
    assert vqa_accuracy("two", ["2"]) == 1.0 and vqa_accuracy("cat", ["dog"]) == 0.0
    # VQAv2: min(1, matches among the other nine / 3), averaged over the ten leave-one-out subsets
    assert vqa_accuracy("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx((3 * 2 / 3 + 7 * 1.0) / 10)
    assert vqa_accuracy("yes", ["yes"] * 4 + ["no"] * 6) == 1.0
    assert vqa_accuracy("yes", ["yes"] + ["no"] * 9) == pytest.approx(9 * (1 / 3) / 10)


@pytest.fixture(scope="module")
def digits_vqa(tmp_path_factory):
    """The offline digits-only VQA set (nothing but scikit-learn) and a model trained on it for two steps."""
    root = tmp_path_factory.mktemp("vqa")
    assert (
        main(
            [
                "make-vqa-data",
                "--output",
                str(root / "data"),
                "--fashion_train",
                "0",
                "--fashion_test",
                "0",
                "--digits_test",
                "1760",
            ]
        )
        == 0
    )
    argv = [
        "train-vlm",
        "--data.train",
        root / "data" / "train.jsonl",
        "--data.batch_size",
        "8",
        "--data.val_size",
        "8",
        "--output",
        root / "model",
        "--model",
        "vl-mamba-test",
        "--trainer.max_steps",
        "2",
        "--trainer.logger",
        "none",
        "--trainer.progress_bar",
        "false",
    ]
    assert main([str(a) for a in argv]) == 0
    return root / "data", root / "model"


def test_eval_vqa_scores_the_offline_set(digits_vqa, tmp_path, capsys):
    data, model = digits_vqa
    capsys.readouterr()
    argv = [
        "eval-vqa",
        "--model",
        str(model),
        "--data",
        str(data / "test.jsonl"),
        "--output",
        str(tmp_path / "e"),
        "--limit",
        "24",
        "--batch_size",
        "5",
        "--max_new_tokens",
        "2",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    kinds = metrics["per_question_type"]
    assert set(kinds) == {"digit", "parity"} and sum(k["count"] for k in kinds.values()) == 24
    predictions = [json.loads(line) for line in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 24 and {"id", "question", "answer", "prediction", "exact_match"} <= predictions[0].keys()
    exact = sum(p["exact_match"] for p in predictions) / 24
    assert metrics["overall"]["exact_match"] == pytest.approx(exact)
    assert f"exact match {exact:.4f}" in out and "  parity: exact match" in out


def test_batched_answers_equal_one_at_a_time(digits_vqa):
    data, model = digits_vqa
    net, tokenizer = VLMamba.from_pretrained(model), load_tokenizer(model)
    records = read_jsonl(data / "test.jsonl")[:6]
    batches = answer_batches(records, tokenizer, batch_size=4)
    assert sorted(i for b in batches for i, _ in b) == list(range(6))
    assert all(len({len(ids) for _, ids in b}) == 1 for b in batches)  # one prompt length per batch: no padding
    batched = predict(net, tokenizer, records, batch_size=4, max_new_tokens=3, device=torch.device("cpu"))
    for record, answer in zip(records, batched):
        image = load_image(record.image, **net.image_config())[None]
        ids = torch.tensor([encode_prompt(tokenizer, record.question)])
        alone = net.generate(image, ids, max_new_tokens=3, eos_token_id=tokenizer.eos_id)
        assert tokenizer.decode(alone[0].tolist()) == answer


def test_eval_vqa_bad_inputs(digits_vqa, tmp_path, capsys):
    data, model = digits_vqa
    (tmp_path / "nofields.jsonl").write_text('{"image": "a.png"}\n')
    record = json.loads((data / "test.jsonl").read_text().splitlines()[0])
    (tmp_path / "elsewhere.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    cases = [
        (["--data", tmp_path / "nofields.jsonl"], "nofields.jsonl:1: 'conversations' must hold human / gpt turn pairs"),
        (["--data", tmp_path / "elsewhere.jsonl"], "1 record image(s) missing"),
        (["--data", data / "test.jsonl", "--output", tmp_path / "full"], "already exists and is not an empty"),
        (["--data", data / "test.jsonl", "--batch_size", "0"], "--batch_size and --max_new_tokens must be >= 1"),
    ]
    for extra, message in cases:
        argv = ["eval-vqa", "--model", model, "--output", tmp_path / "out", *extra]
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "out").exists()
    # --images: the folder the relative image paths start from
    argv = [
        "eval-vqa",
        "--model",
        model,
        "--data",
        tmp_path / "elsewhere.jsonl",
        "--images",
        data,
        "--output",
        tmp_path / "ok",
        "--max_new_tokens",
        "2",
    ]
    assert main([str(a) for a in argv]) == 0


def test_vqa_history_holds_a_conversation(digits_vqa, tmp_path, capsys):
    data, model = digits_vqa
    image = read_jsonl(data / "test.jsonl")[0].image
    chat = tmp_path / "chat.json"
    ask = ["vqa", "--model", str(model), "--image", str(image), "--max_new_tokens", "2", "--history", str(chat)]
    assert main([*ask, "--question", "which digit is this?"]) == 0
    first = capsys.readouterr().out.strip()
    assert main([*ask, "--question", "is the digit even or odd?"]) == 0
    second = capsys.readouterr().out.strip()
    turns = json.loads(chat.read_text())
    assert [t["from"] for t in turns] == ["human", "gpt", "human", "gpt"]
    assert (turns[1]["value"], turns[3]["value"]) == (first, second)
    # the second answer continues the first exchange: the same as generating after it by hand
    net, tokenizer = VLMamba.from_pretrained(model), load_tokenizer(model)
    ids = torch.tensor([encode_follow_up(tokenizer, [("which digit is this?", first)], "is the digit even or odd?")])
    pixels = load_image(image, **net.image_config())[None]
    again = net.generate(pixels, ids, max_new_tokens=2, eos_token_id=tokenizer.eos_id)
    assert tokenizer.decode(again[0].tolist()) == second
    chat.write_text('[{"from": "gpt", "value": "x"}]')
    assert main([*ask, "--question", "hi?"]) == 2
    assert "expected a list of alternating" in capsys.readouterr().err
