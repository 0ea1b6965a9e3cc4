"""2D scan orders for vision state-space models, each a permutation of the token grid with an exact inverse.

A scan turns an h x w token grid (row-major tokens ``p = r * w + c``) into a 1D sequence for a selective scan.
LocalMamba (hunto/LocalMamba ``MultiScan``) chooses per layer among eight directions:

    h, h_flip     row-major order and its reverse
    v, v_flip     column-major order and its reverse
    w2, w2_flip   2 x 2 windows in row-major order, row-major inside each window; and the reverse
    w7, w7_flip   the same with 7 x 7 windows

Window scans zero-pad the grid on the bottom and right up to multiples of the window size, as the released
``local_scan`` does; the padded zeros are part of the scanned sequence (they move the SSM state) and are
dropped again by the inverse. Vim's bidirectional scan is ``("h", "h_flip")`` (`BIDIRECTIONAL`, VL-Mamba's BSM)
and VMamba's cross scan is ``("h", "v", "h_flip", "v_flip")`` (`CROSS`, VL-Mamba's CSM).

Upstream bug, fixed here: the released ``MultiScan.reverse`` undoes ``v`` / ``v_flip`` with
``rearrange('b d (h w) -> b d (w h)', h=H, w=W)``, which is the inverse only when H == W; on a non-square grid
(detection / segmentation inputs) it puts tokens in the wrong places. Our inverse is derived from the scan
order itself, so it is exact on every grid. Square grids (all released checkpoints) are unaffected.

`scan_ref` / `unscan_ref` are the spec: the released code's reshapes, run on the data. `multi_scan` /
`multi_unscan` are the fast path: one gather through a cached index for all directions at once, with an
optional class token kept at a fixed sequence position (LocalVim's middle class token).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Direction = Literal["h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip"]

ALL_DIRECTIONS: tuple[Direction, ...] = ("h", "h_flip", "v", "v_flip", "w2", "w2_flip", "w7", "w7_flip")
BIDIRECTIONAL: tuple[Direction, ...] = ("h", "h_flip")
CROSS: tuple[Direction, ...] = ("h", "v", "h_flip", "v_flip")

_PATTERN = re.compile(r"^(h|v|w([1-9][0-9]*))(_flip)?$")


def parse_direction(direction: str) -> tuple[str, int, bool]:
    """``"w7_flip"`` -> ("w", 7, True); ``"v"`` -> ("v", 0, False). Raises ValueError for unknown names."""
    found = _PATTERN.match(direction) if isinstance(direction, str) else None
    if found is None:
        raise ValueError(f"unknown scan direction {direction!r}; expected one of {', '.join(ALL_DIRECTIONS)}")
    kind, window, flip = found.group(1), found.group(2), found.group(3) is not None
    return ("w", int(window), flip) if window else (kind, 0, flip)


def scan_length(direction: str, h: int, w: int) -> int:
    """Length of the scanned sequence: h * w, or the padded grid for window scans."""
    kind, k, _ = parse_direction(direction)
    if kind != "w":
        return h * w
    return -(-h // k) * k * -(-w // k) * k


def scan_ref(x: torch.Tensor, direction: str, grid: tuple[int, int]) -> torch.Tensor:
    """The released scan on data: x (b, h*w, d) -> (b, s, d), s = `scan_length` (zeros where padded)."""
    kind, k, flip = parse_direction(direction)
    h, w = grid
    b, l, d = x.shape
    if l != h * w:
        raise ValueError(f"x has {l} tokens; grid {h}x{w} needs {h * w}")
    if kind == "h":
        y = x
    elif kind == "v":
        y = x.view(b, h, w, d).transpose(1, 2).reshape(b, l, d)
    else:
        hg, wg = -(-h // k), -(-w // k)
        y = F.pad(x.view(b, h, w, d), (0, 0, 0, wg * k - w, 0, hg * k - h))
        y = y.view(b, hg, k, wg, k, d).permute(0, 1, 3, 2, 4, 5).reshape(b, -1, d)
    return y.flip(1) if flip else y


def unscan_ref(y: torch.Tensor, direction: str, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of `scan_ref`: y (b, s, d) -> (b, h*w, d), padding dropped (the true inverse for ``v`` too)."""
    kind, k, flip = parse_direction(direction)
    h, w = grid
    b, s, d = y.shape
    if s != scan_length(direction, h, w):
        raise ValueError(f"y has {s} positions; {direction} on {h}x{w} makes {scan_length(direction, h, w)}")
    if flip:
        y = y.flip(1)
    if kind == "h":
        return y
    if kind == "v":
        return y.view(b, w, h, d).transpose(1, 2).reshape(b, h * w, d)
    hg, wg = -(-h // k), -(-w // k)
    y = y.view(b, hg, wg, k, k, d).permute(0, 1, 3, 2, 4, 5).reshape(b, hg * k, wg * k, d)
    return y[:, :h, :w].reshape(b, h * w, d)


@functools.lru_cache(maxsize=512)
def scan_order(direction: str, h: int, w: int) -> tuple[int, ...]:
    """Which token sits at each position of the scanned sequence (-1: a padded zero), from `scan_ref`."""
    grid = torch.arange(h * w, dtype=torch.float64, device="cpu").view(1, h * w, 1) + 1
    order = scan_ref(grid, direction, (h, w)).view(-1).long() - 1
    return tuple(order.tolist())


@functools.lru_cache(maxsize=512)
def _plan(directions: tuple[str, ...], h: int, w: int, cls_position: int | None) -> tuple[torch.Tensor, ...]:
    """Gather indices for all directions at once.

    Tokens are the h*w patches, plus a class token at index ``cls_position`` when given (patch p is token p
    before it, p + 1 after it). Every direction's sequence is right-padded to the longest one (harmless for a
    causal scan: nothing after a position changes it), and the class token is inserted at ``cls_position`` of
    each sequence. Returns (take (k*s,), index into the tokens plus one zero row at index l;
    give (k*l,), index into the k*s flattened sequences; lengths (k,)).
    """
    l = h * w + (cls_position is not None)
    orders = []
    for direction in directions:
        order = [p if cls_position is None or p < cls_position else p + 1 for p in scan_order(direction, h, w)]
        if cls_position is not None:
            order.insert(cls_position, cls_position)
        orders.append(order)
    s = max(len(o) for o in orders)
    take, give = [], []
    for k, order in enumerate(orders):
        padded = [l if t < 0 else t for t in order] + [l] * (s - len(order))
        take.extend(padded)
        where = {t: i for i, t in enumerate(order) if t >= 0}
        give.extend(k * s + where[t] for t in range(l))
    lengths = [len(o) for o in orders]
    # cached for every later call: never an inference-mode tensor, which autograd could not save, and on the CPU
    # whatever default device the first call ran under (callers move it to the data's device)
    with torch.inference_mode(False):
        return tuple(torch.tensor(values, device="cpu") for values in (take, give, lengths))


def _check(x: torch.Tensor, directions: Sequence[str], grid: tuple[int, int], cls_position: int | None) -> int:
    for direction in directions:
        parse_direction(direction)
    h, w = grid
    if h < 1 or w < 1:
        raise ValueError(f"grid must be at least 1x1; got {h}x{w}")
    if cls_position is not None and not 0 <= cls_position <= h * w:
        raise ValueError(f"cls_position {cls_position} outside 0..{h * w}")
    return h * w + (cls_position is not None)


def multi_scan(
    x: torch.Tensor, directions: Sequence[str], grid: tuple[int, int], *, cls_position: int | None = None
) -> torch.Tensor:
    """Scan the tokens in every direction: x (b, l, d) -> (b, k, s, d), k = len(directions).

    Args:
        x: the tokens: the h*w patches in row-major order, with a class token at ``cls_position`` if given.
        grid: (h, w), the patch grid.
        cls_position: keep this token out of the 2D scan and put it at this position of every sequence.

    Each sequence is right-padded with zeros to s, the longest scan length (window scans pad the grid).
    """
    l = _check(x, directions, grid, cls_position)
    if x.shape[1] != l:
        raise ValueError(f"x has {x.shape[1]} tokens; grid {grid[0]}x{grid[1]} with cls={cls_position} needs {l}")
    take, _, _ = _plan(tuple(directions), grid[0], grid[1], cls_position)
    x = torch.cat([x, x.new_zeros(x.shape[0], 1, x.shape[2])], dim=1)
    y = x.index_select(1, take.to(x.device))
    return y.view(x.shape[0], len(directions), -1, x.shape[2])


def multi_unscan(
    y: torch.Tensor, directions: Sequence[str], grid: tuple[int, int], *, cls_position: int | None = None
) -> torch.Tensor:
    """Inverse of `multi_scan`: y (b, k, s, d) -> (b, k, l, d), every direction back in token order."""
    l = _check(y, directions, grid, cls_position)
    take, give, _ = _plan(tuple(directions), grid[0], grid[1], cls_position)
    b, k, s, d = y.shape
    if k != len(directions) or k * s != take.numel():
        raise ValueError(f"y is {tuple(y.shape)}; expected (b, {len(directions)}, {take.numel() // k}, d)")
    return y.reshape(b, k * s, d).index_select(1, give.to(y.device)).view(b, k, l, d)


def scan_lengths(directions: Sequence[str], grid: tuple[int, int], *, cls_position: int | None = None) -> list[int]:
    """The unpadded length of each direction's sequence in `multi_scan` (the class token included)."""
    return _plan(tuple(directions), grid[0], grid[1], cls_position)[2].tolist()


def scan(x: torch.Tensor, direction: str, grid: tuple[int, int]) -> torch.Tensor:
    """One direction: x (b, h*w, d) -> (b, s, d)."""
    return multi_scan(x, (direction,), grid)[:, 0]


def unscan(y: torch.Tensor, direction: str, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of `scan`: y (b, s, d) -> (b, h*w, d)."""
    return multi_unscan(y[:, None], (direction,), grid)[:, 0]
