"""The tokens file of `vision tokenize3d` / `decode3d`: an ``.npz`` archive (no pickles) holding the token ids
(t, h, w), optionally their continuous embeddings (the LFQ codes in {-1, +1}, (bits, t, h, w), what the official
whole-dataset script saves for report generation), and the geometry needed to turn them back into a volume.
A file may hold either form or both; reading checks every field and derives the ids from the embeddings' signs when
only those are there."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longseq.core.io import InputError, atomic_output
from longseq.vision.btb3d.volumes import MAX_VOXELS, check_affine, check_size, check_spacing, check_window

FORMAT = "btb3d-tokens-v1"
# The largest array member read back: a MAX_VOXELS volume has MAX_VOXELS / 64 tokens at 8x8x8 (int64: 128 MiB).
MAX_MEMBER_BYTES = MAX_VOXELS * 8 // 64


@dataclass
class TokensFile:
    """Token ids (t, h, w) int64 of a volume of ``shape`` (d, h, w) voxels before padding to the token grid, with
    the preprocessed grid's spacing (mm) and affine, the intensity window, and the model that wrote them."""

    ids: np.ndarray
    token_bits: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: np.ndarray
    hu_window: tuple[float, float]
    model: str
    embeddings: np.ndarray | None = None
    """(bits, t, h, w) float32 codes in {-1, +1} (`lfq.indices_to_codes`); None: not stored."""

    def write(self, path: str | os.PathLike) -> None:
        """Write atomically (a temporary file renamed when complete)."""
        with atomic_output(path) as tmp:
            np.savez_compressed(
                tmp,
                format=np.array(FORMAT),
                ids=self.ids.astype(np.int64),
                token_bits=np.array(self.token_bits),
                shape=np.array(self.shape),
                spacing=np.array(self.spacing),
                affine=self.affine,
                hu_window=np.array(self.hu_window),
                model=np.array(self.model),
                **({} if self.embeddings is None else {"embeddings": self.embeddings.astype(np.float32)}),
            )


def read_tokens(path: str | os.PathLike) -> TokensFile:
    """Read and check a tokens file; anything wrong is a one-line `InputError` naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such tokens file: {path}")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a tokens file (expected the .npz archive written by tokenize3d)")
    try:
        with zipfile.ZipFile(path) as archive:
            too_big = [info.filename for info in archive.infolist() if info.file_size > MAX_MEMBER_BYTES]
        if too_big:
            raise InputError(f"{path}: {too_big[0]} is larger than any tokens file tokenize3d writes")
        with np.load(path, allow_pickle=False) as archive:
            fields = {key: archive[key] for key in archive.files}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: cannot read as a tokens .npz file: {err}") from None
    needed = ("format", "token_bits", "shape", "spacing", "affine", "hu_window", "model")
    if str(fields.get("format", "")) != FORMAT or not set(needed) <= fields.keys():
        missing = ", ".join(sorted(set(needed) - fields.keys())) or "format"
        raise InputError(f"{path}: not a tokens file written by tokenize3d (missing or wrong: {missing})")
    if "ids" not in fields and "embeddings" not in fields:
        raise InputError(f"{path}: holds neither token ids nor embeddings")
    return _checked(fields, path)


def _embeddings(fields: dict[str, np.ndarray], bits: int, path: Path) -> np.ndarray | None:
    """The checked embeddings (bits, t, h, w), or None; ids derived from them when the file has none."""
    codes = fields.get("embeddings")
    if codes is None:
        return None
    if codes.ndim != 4 or codes.shape[0] != bits or codes.size == 0 or codes.dtype.kind != "f":
        raise InputError(f"{path}: embeddings must be a (token_bits={bits}, t, h, w) float array, got {codes.shape}")
    if not np.isfinite(codes).all() or (codes == 0).any():
        raise InputError(f"{path}: embeddings must be finite and non-zero (their signs are the token bits)")
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)  # channel 0 the most significant bit (lfq)
    ids = ((codes > 0).astype(np.int64) * weights[:, None, None, None]).sum(0)
    if "ids" not in fields:
        fields["ids"] = ids
    elif fields["ids"].shape != ids.shape:
        raise InputError(f"{path}: the ids' token grid {fields['ids'].shape} and the embeddings' {ids.shape} differ")
    elif not np.array_equal(fields["ids"], ids):
        raise InputError(f"{path}: the ids and the embeddings' signs disagree")
    return codes.astype(np.float32)


def _checked(fields: dict[str, np.ndarray], path: Path) -> TokensFile:
    bits, shape = fields["token_bits"], fields["shape"]
    if bits.shape != () or not np.issubdtype(bits.dtype, np.integer) or not 1 <= int(bits) <= 30:
        raise InputError(f"{path}: token_bits must be one integer in [1, 30], got {bits.tolist()}")
    if "ids" in fields:  # checked before the embeddings are compared with them
        ids = fields["ids"]
        if ids.ndim != 3 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(
                f"{path}: ids must be a non-empty (t, h, w) array of integers, got {ids.dtype} {ids.shape}"
            )
        if ids.min() < 0 or ids.max() >= 2 ** int(bits):
            raise InputError(f"{path}: token ids must lie in [0, 2**{int(bits)}), got {ids.min()} to {ids.max()}")
    embeddings = _embeddings(fields, int(bits), path)
    ids = fields["ids"]
    if shape.shape != (3,) or not np.issubdtype(shape.dtype, np.integer) or (shape < 1).any():
        raise InputError(f"{path}: shape must be three positive integers (d, h, w), got {shape.tolist()}")
    check_size(tuple(shape), f"{path}: shape")
    spacing = tuple(float(v) for v in np.ravel(fields["spacing"]))
    window = tuple(float(v) for v in np.ravel(fields["hu_window"]))
    try:
        check_spacing(spacing)
        check_window(window)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    if fields["model"].shape != () or fields["model"].dtype.kind != "U":
        raise InputError(f"{path}: model must be one string")
    return TokensFile(
        ids=ids.astype(np.int64),
        token_bits=int(bits),
        shape=tuple(int(n) for n in shape),
        spacing=spacing,
        affine=check_affine(fields["affine"], path),
        hu_window=window,
        model=str(fields["model"]),
        embeddings=embeddings,
    )
