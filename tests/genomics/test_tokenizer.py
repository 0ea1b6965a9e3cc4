"""The DNA tokenizer: released ids, the lowercase / IUPAC policy, refusals, padding and reversal."""

from __future__ import annotations

import pytest
import torch

from longseq.core.io import InputError
from longseq.genomics.data.tokenizer import PAD, DNATokenizer, pad_batch, reverse, reverse_complement


def test_ids_match_the_released_tokenizers():
    tok = DNATokenizer()
    # The example of hyena-dna issue #77: the HF tokenizer appends [SEP] = 1.
    assert tok.encode("AGCTACATTGGCC", add_eos=True).tolist() == [7, 9, 8, 10, 7, 8, 7, 10, 10, 9, 9, 8, 8, 1]
    assert tok.encode("N").tolist() == [11]
    assert tok.decode([0, 1, 4, 7, 8, 9, 10, 11]) == "[CLS][SEP][PAD]ACGTN"


def test_lowercase_and_iupac_policy():
    assert DNATokenizer().encode("acgtn").tolist() == [7, 8, 9, 10, 11]
    assert DNATokenizer(soft_masked="n").encode("ACgt").tolist() == [7, 8, 11, 11]
    assert DNATokenizer().encode("RYSWKMBDHVrysu").tolist() == [11] * 13 + [10]
    with pytest.raises(InputError, match=r"chr1: character 'R' at position 3 is an IUPAC ambiguity code"):
        DNATokenizer(ambiguous="error").encode("ACRT", name="chr1")


@pytest.mark.parametrize(
    ("seq", "char", "pos"), [("ACG-T", "-", 4), ("AC1", "1", 3), ("ACGTé", "é", 5), ("A*", "*", 2)]
)
def test_characters_outside_the_policy_are_refused(seq, char, pos):
    with pytest.raises(InputError, match=rf"rec: .*{char!r} at position {pos + 10}"):
        DNATokenizer().encode(seq, name="rec", offset=10)


def test_pad_batch_pads_on_the_right_with_lengths():
    ids, lengths = pad_batch([torch.tensor([7, 8, 9]), torch.tensor([10])])
    assert ids.tolist() == [[7, 8, 9], [10, PAD, PAD]]
    assert lengths.tolist() == [3, 1]


def test_reverse_within_lengths_and_reverse_complement():
    ids, lengths = pad_batch([DNATokenizer().encode("AACG"), DNATokenizer().encode("GT")])
    assert reverse(ids, lengths).tolist() == [[9, 8, 7, 7], [10, 9, PAD, PAD]]
    assert DNATokenizer().decode(reverse_complement(ids, lengths)[0]) == "CGTT"
    assert DNATokenizer().decode(reverse_complement(ids, lengths)[1][:2]) == "AC"
    x = torch.randn(2, 4, 3)
    assert torch.equal(reverse(reverse(x, lengths), lengths), x)
    assert torch.equal(reverse(x), x.flip(1))
