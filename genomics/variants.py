"""Variant effect scores from a VCF and a reference genome: the engine behind ``dna score``.

The VCF is read with pysam (plain, bgzipped or BCF); the reference by random access through pysam's FASTA
reader (a ``.fai`` index, made beside a plain FASTA if it has none; a bgzipped one needs its ``.fai`` and ``.gzi``),
so a genome is never loaded whole. Each ALT allele of a record is one variant (multi-allelic records are split, in
ALT order). Per variant, a reference window of ``window`` bases is centred on it (``window // 2`` bases before the
variant) and the alternate window is the same left flank, the ALT allele, and reference bases after the REF allele
up to the same length. Scores:

- causal models (HyenaDNA): ``llr``, the log-likelihood (natural log) of the alternate window minus the reference
  window's, every position after the first scored;
- masked models (Caduceus): ``masked_llr``, the masked marginal log-ratio: the REF positions are masked in the
  reference window and ``sum log P(alt base) - log P(ref base)`` is taken over them (substitutions, SNVs and MNVs;
  empty for indels, where it is not defined);
- every model: ``cosine_distance`` and ``l2_distance`` between the mean embeddings of the two windows, as
  Caduceus's variant-effect pipeline takes them;
- RC-aware models: every score averaged with the one computed on the reverse complement strand (by default for
  Caduceus-Ph, conjoined post hoc; Caduceus-PS is RC-equivariant by construction, so the average would equal it).

Skipped, with a count: symbolic alleles (``<DEL>``, breakends, ``*``), records without an ALT, and variants whose
window would run past either end of the contig. Refused (one line naming the VCF line): a REF allele that
disagrees with the reference (usually another genome build), and a contig the reference does not have.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from longseq.core.io import InputError
from longseq.genomics.data.tokenizer import MASK, DNATokenizer, reverse_complement
from longseq.genomics.embed import embed_windows

SKIPS = ("symbolic", "no_alt", "near_end")
_BASES = re.compile(r"^[ACGTNacgtn]+$")


@dataclass(frozen=True)
class Variant:
    """One ALT allele of a VCF record, and the windows that score it (empty when it is skipped).

    Attributes:
        line: the record's line in the (uncompressed) VCF, 1-based (in a BCF: its record number).
        chrom, pos, id, ref, alt: as in the VCF (``pos`` 1-based).
        skip: why it is not scored ("symbolic", "no_alt", "near_end"), or "" when it is.
        ref_window, alt_window: the two windows' text (``window`` bases each).
        offset: where the variant starts in the windows.
    """

    line: int
    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    skip: str = ""
    ref_window: str = ""
    alt_window: str = ""
    offset: int = 0


def _open_vcf(path: Path):
    import pysam

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return pysam.VariantFile(str(path))
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not a VCF or BCF file: {err}") from None


def open_reference(path: str | os.PathLike):
    """A pysam FastaFile (random access; the index is made beside a plain FASTA that has none)."""
    import pysam

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return pysam.FastaFile(str(path))
    except (ValueError, OSError) as err:
        raise InputError(
            f"{path}: cannot read it as an indexed FASTA (plain, or bgzipped with .fai/.gzi): {err}"
        ) from None


def read_variants(vcf: str | os.PathLike, reference, *, window: int) -> Iterator[Variant]:
    """The VCF's variants in file order (multi-allelic records split), with their windows cut from ``reference``
    (a pysam FastaFile).

    Raises:
        InputError: an unreadable VCF, a contig missing from the reference, a REF allele that disagrees with it.
    """
    vcf = Path(vcf)
    lengths = dict(zip(reference.references, reference.lengths, strict=True))
    with _open_vcf(vcf) as handle:
        # Records follow the header one per line, so a record's line is the header's length plus its ordinal.
        header_lines = _header_lines(vcf)
        try:
            for n, record in enumerate(handle, 1):
                yield from _split(record, header_lines + n, vcf, reference, lengths, window)
        except InputError:
            raise
        except (ValueError, OSError) as err:
            raise InputError(f"{vcf}: malformed VCF: {err}") from None


def _header_lines(path: Path) -> int:
    """The number of header lines of a VCF (plain or bgzipped); 0 for a BCF, whose records are then numbered
    from 1 (it has no lines)."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as handle:
        if handle.read(3) == b"BCF":
            return 0
        handle.seek(0)
        return sum(1 for _ in itertools.takewhile(lambda line: line.startswith(b"#"), handle))


def _split(record, line: int, vcf: Path, reference, lengths: dict[str, int], window: int) -> Iterator[Variant]:
    chrom, pos, ref = record.chrom, record.pos, record.ref.upper()
    name = record.id or "."
    if chrom not in lengths:
        raise InputError(f"{vcf}:{line}: contig {chrom!r} is not in the reference")
    start = pos - 1
    if start + len(ref) > lengths[chrom]:
        raise InputError(f"{vcf}:{line}: {chrom}:{pos} {ref} runs past the end of {chrom} ({lengths[chrom]:,} bp)")
    genome = reference.fetch(chrom, start, start + len(ref)).upper()
    if genome != ref:
        raise InputError(
            f"{vcf}:{line}: REF {ref} at {chrom}:{pos} disagrees with the reference ({genome}); another genome build?"
        )
    if not record.alts:
        yield Variant(line, chrom, pos, name, ref, ".", skip="no_alt")
        return
    for alt in record.alts:
        if not _BASES.match(alt):  # <DEL>, breakends, *, ...
            yield Variant(line, chrom, pos, name, ref, alt, skip="symbolic")
            continue
        left = start - window // 2
        # The reference window needs `window` bases; the alternate one the same flank, the ALT and the rest.
        right = start + len(ref) + max(0, window - window // 2 - len(alt))
        end = max(left + window, right)
        if left < 0 or end > lengths[chrom]:
            yield Variant(line, chrom, pos, name, ref, alt, skip="near_end")
            continue
        text = reference.fetch(chrom, left, end).upper()
        offset = start - left
        ref_window = text[:window]
        alt_window = (text[:offset] + alt.upper() + text[offset + len(ref) :])[:window]
        yield Variant(line, chrom, pos, name, ref, alt.upper(), "", ref_window, alt_window, offset)


def encode_variants(variants: list[Variant], tokenizer: DNATokenizer) -> dict:
    """A batch plan -> tensors of the scored variants: ``ref`` / ``alt`` (m, window) ids, ``offset`` (m,),
    ``substitution`` (m,) bool, ``width`` (m,) REF length; and every variant's row fields (VCF columns, ``skip``)."""
    scored = [v for v in variants if not v.skip]
    rows = {
        "line": np.array([v.line for v in variants], dtype=np.int64),
        "chrom": np.array([v.chrom for v in variants], dtype=str),
        "pos": np.array([v.pos for v in variants], dtype=np.int64),
        "vid": np.array([v.id for v in variants], dtype=str),
        "ref_allele": np.array([v.ref for v in variants], dtype=str),
        "alt_allele": np.array([v.alt for v in variants], dtype=str),
        "skip": np.array([v.skip for v in variants], dtype=str),
    }
    if not scored:
        return rows

    def ids(texts: list[str], what: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([tokenizer.encode(t, name=f"{what} window") for t in texts]))

    return {
        **rows,
        "ref": ids([v.ref_window for v in scored], "reference"),
        "alt": ids([v.alt_window for v in scored], "alternate"),
        "offset": torch.tensor([v.offset for v in scored]),
        "width": torch.tensor([len(v.ref) for v in scored]),
        "substitution": torch.tensor([len(v.ref) == len(v.alt) for v in scored]),
    }


def _log_likelihood(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """ids (m, w) -> (m,) sum over positions 1 .. w-1 of log P(x_t | x_<t) under a causal model."""
    logp = model(ids).float().log_softmax(-1)
    return logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].sum(-1)


def _masked_llr(model: nn.Module, ref: torch.Tensor, alt: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(m,) sum over the ``positions`` (m, w) bool of log P(alt) - log P(ref), with those positions masked."""
    logp = model(ref.masked_fill(positions, MASK)).float().log_softmax(-1)
    diff = logp.gather(-1, alt[..., None])[..., 0] - logp.gather(-1, ref[..., None])[..., 0]
    return (diff * positions).sum(-1)


def _mean_embedding(model: nn.Module, ids: torch.Tensor, rc: bool) -> torch.Tensor:
    return embed_windows(model, ids, None, rc=rc, layer=-1).mean(1)


@torch.no_grad()
def score_batch(model: nn.Module, batch: dict, *, causal: bool, rc: bool) -> dict[str, np.ndarray]:
    """A prepared batch -> its row fields and the scores of the scored variants (NaN for the skipped ones):
    ``llr`` (causal) or ``masked_llr`` (masked), ``cosine_distance``, ``l2_distance``."""
    out = {name: value for name, value in batch.items() if isinstance(value, np.ndarray)}
    names = ("llr" if causal else "masked_llr", "cosine_distance", "l2_distance")
    scores = {name: np.full(len(out["skip"]), np.nan, dtype=np.float64) for name in names}
    if "ref" in batch:
        ref, alt = batch["ref"], batch["alt"]
        ref_rc, alt_rc = reverse_complement(ref), reverse_complement(alt)
        if causal:
            primary = _log_likelihood(model, alt) - _log_likelihood(model, ref)
            if rc:
                primary = (primary + _log_likelihood(model, alt_rc) - _log_likelihood(model, ref_rc)) / 2
        else:
            cols = torch.arange(ref.shape[1], device=ref.device)
            offset, width = batch["offset"][:, None], batch["width"][:, None]
            positions = (cols >= offset) & (cols < offset + width) & batch["substitution"][:, None]
            primary = _masked_llr(model, ref, alt, positions)
            if rc:  # the same positions, counted from the other end
                primary = (primary + _masked_llr(model, ref_rc, alt_rc, positions.flip(1))) / 2
            primary = primary.masked_fill(~batch["substitution"], float("nan"))
        e_ref, e_alt = _mean_embedding(model, ref, rc), _mean_embedding(model, alt, rc)
        scored = out["skip"] == ""
        scores[names[0]][scored] = primary.double().cpu().numpy()
        scores["cosine_distance"][scored] = (1 - F.cosine_similarity(e_ref, e_alt, dim=-1)).double().cpu().numpy()
        scores["l2_distance"][scored] = (e_ref - e_alt).norm(dim=-1).double().cpu().numpy()
    return {**out, **scores}


def write_scores(handle, outputs, *, causal: bool) -> dict[str, int]:
    """Write one TSV row per scored variant, in VCF order; returns the counts of scored and skipped variants."""
    primary = "llr" if causal else "masked_llr"
    columns = ["chrom", "pos", "id", "ref", "alt", primary, "cosine_distance", "l2_distance"]
    handle.write("\t".join(columns) + "\n")
    counts = dict.fromkeys(("scored", *SKIPS), 0)
    for out in outputs:
        for row in range(len(out["skip"])):
            skip = str(out["skip"][row])
            if skip:
                counts[skip] += 1
                continue
            counts["scored"] += 1
            values = (out[primary][row], out["cosine_distance"][row], out["l2_distance"][row])
            cells = [str(out[k][row]) for k in ("chrom", "pos", "vid", "ref_allele", "alt_allele")]
            cells += ["" if np.isnan(v) else f"{v:.6g}" for v in values]
            handle.write("\t".join(cells) + "\n")
    return counts
