"""Training items for prompted synthesis: two utterances of one speaker in a row (`CodeUtterances` pairs)."""

import pytest
import torch

from longseq.core.io import InputError
from longseq.speech.data.codes import EncodedCorpus
from longseq.speech.tasks.data import CodeUtterances, collate_utterances
from longseq.speech.text.tokenizer import TextTokenizer

WORDS = ("alice", "rabbit", "queen", "garden", "tea", "cat", "door", "key", "hat", "sea")


def toy_corpus(speakers: int = 2, per_speaker: int = 6, seed: int = 0) -> EncodedCorpus:
    """Utterances of 4 x T codes: a silent frame (code 0), one speech frame per 3 characters of the text (codes
    1..15), two silent frames; like real recordings, every utterance ends in silence."""
    g = torch.Generator().manual_seed(seed)
    codes, texts, names = [], [], []
    for s in range(speakers):
        for n in range(per_speaker):
            text = " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (2 + n % 3,), generator=g))
            speech = torch.randint(1, 16, (4, len(text) // 3), generator=g)
            codes.append(
                torch.cat([torch.zeros(4, 1, dtype=torch.long), speech, torch.zeros(4, 2, dtype=torch.long)], 1)
            )
            texts.append(text)
            names.append(f"spk{s}")
    return EncodedCorpus(
        codes=codes, texts=texts, speakers=names, splits=["train"] * len(codes), codec="toy", frame_rate=12.5
    )


def utterances(corpus, **options) -> CodeUtterances:
    return CodeUtterances(corpus, list(range(len(corpus))), TextTokenizer(kind="bytes"), n_codebooks=4, **options)


def test_a_pair_is_two_utterances_of_one_speaker_with_one_end():
    corpus = toy_corpus()
    tokenizer = TextTokenizer(kind="bytes")
    data = utterances(corpus, pair_probability=1.0, passes=3)
    assert len(data) == 3 * len(corpus)
    for index in range(len(data)):
        i, j = index % len(corpus), data.partner(index)
        assert j is not None and j != i and corpus.speakers[j] == corpus.speakers[i]
        text, codes = data[index]
        assert text.tolist() == tokenizer.encode(corpus.texts[j] + " " + corpus.texts[i])
        assert torch.equal(codes, torch.cat([corpus.codes[j], corpus.codes[i]], 1))
    # Each pass draws the partner anew; an item is the same item every time it is asked for (exact resume).
    assert len({data.partner(i) for i in range(0, len(data), len(corpus))}) > 1
    assert all(torch.equal(data[i][1], data[i][1]) for i in range(len(data)))
    # The batch's lengths are the pairs' lengths: the end-of-speech target comes after the second utterance only.
    batch = collate_utterances([data[0], data[1]])
    first = corpus.codes[data.partner(0)].shape[1] + corpus.codes[0].shape[1]
    assert batch["code_lens"][0] == first


def test_pair_share_length_bound_and_single_utterances():
    corpus = toy_corpus()
    assert all(utterances(corpus).partner(i) is None for i in range(len(corpus)))
    data = utterances(corpus, pair_probability=0.5, passes=20)
    share = sum(data.partner(i) is not None for i in range(len(data))) / len(data)
    assert 0.4 < share < 0.6
    # No pair longer than max_frames: an utterance with no partner short enough stays single.
    longest = max(c.shape[1] for c in corpus.codes)
    bounded = utterances(corpus, pair_probability=1.0, max_frames=longest)
    for index in range(len(bounded)):
        j, i = bounded.partner(index), index % len(corpus)
        assert j is None or corpus.codes[j].shape[1] + corpus.codes[i].shape[1] <= longest
        assert bounded[index][1].shape[1] <= longest
    assert any(bounded.partner(i) is None for i in range(len(bounded)))


def test_a_speaker_with_one_utterance_and_bad_probability():
    corpus = toy_corpus(per_speaker=1)
    data = utterances(corpus, pair_probability=1.0)
    assert [data.partner(i) for i in range(len(data))] == [None, None]
    with pytest.raises(InputError, match="pair probability"):
        utterances(corpus, pair_probability=1.5)


def fit_clam(corpus: EncodedCorpus, pair_probability: float, steps: int = 300):
    """clam-tts-tiny fitted on ``corpus`` (Adam on `ClamTTS.losses`, as `ClamTTSTask` trains it)."""
    from longseq.core.registry import from_pretrained

    torch.manual_seed(0)
    model = from_pretrained("clam-tts-tiny")
    data = utterances(corpus, pair_probability=pair_probability, passes=steps)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.randperm(len(data))
    for step in range(steps):
        batch = collate_utterances([data[int(i)] for i in order[8 * step : 8 * step + 8]])
        loss = model.losses(batch["text"], batch["text_lens"], batch["codes"], batch["code_lens"])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def end_probability(model, text: str, codes: torch.Tensor) -> float:
    """P(end of speech) after the last of ``codes`` (D, T), speaking ``text``."""
    ids = torch.tensor([model.config.text_tokenizer().encode(text)])
    _, _, logits = model(ids, torch.tensor([ids.shape[1]]), codes[None], torch.tensor([codes.shape[1]]))
    return float(torch.sigmoid(logits[0, -1]))


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (two contend on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pairs_teach_clam_not_to_end_after_a_prompt(one_thread):
    """Prompted synthesis: the prompt utterance a, then the text of a followed by b's. Trained on single utterances,
    the end classifier fires after a's audio (it ends in silence, as every utterance it saw did); trained with
    pairs it waits for b, and still ends single utterances."""
    corpus = toy_corpus()
    cases = [(a, a + 1 if a % 6 < 5 else a - 5) for a in range(len(corpus))]  # b: another of a's speaker

    def ends(model) -> tuple[int, int]:
        after_prompt = [
            end_probability(model, f"{corpus.texts[a]} {corpus.texts[b]}", corpus.codes[a]) for a, b in cases
        ]
        at_end = [end_probability(model, corpus.texts[a], corpus.codes[a]) for a, _ in cases]
        return sum(p > 0.5 for p in after_prompt), sum(p > 0.5 for p in at_end)

    after_prompt, at_end = ends(fit_clam(corpus, pair_probability=0.0))
    assert after_prompt >= 1 and at_end == len(cases)
    after_prompt, at_end = ends(fit_clam(corpus, pair_probability=0.5))
    assert after_prompt == 0 and at_end == len(cases)
