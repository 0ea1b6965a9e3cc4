"""The Hyena operator (order 2) with HyenaDNA's parameter names, and a cached generation path.

Hyena (Poli et al., 2023) as HyenaDNA releases it::

    x0, x1, v = ShortConv(in_proj(u))                   three (b, d, l) streams, causal width-3 depthwise conv
    k = modulation(t) * implicit_filter(z(t))           (d, l) long filter from positional features
    y = out_proj(x0 * (k * (x1 * v) + bias * (x1 * v)))  '*' between k and a stream: causal convolution by FFT

Parameter and buffer names equal HyenaDNA's (``in_proj``, ``short_filter``, ``filter_fn.bias``,
``filter_fn.pos_emb.{z,t}``, ``filter_fn.implicit_filter.{0..6}``, ``filter_fn.modulation.deltas``, ``out_proj``),
so released weights load without renaming. The implicit filter's three Sin activations are one module with one
shared ``freq``, as upstream (its state dict lists ``implicit_filter.{1,3,5}.freq``, one tensor).

Inputs longer than ``l_max``. The positional features are normalised by ``l_max`` (``t = i / (l_max - 1)``,
``w = 2 pi i / l_max``), so the filter is only defined on ``0 <= i < l_max`` and upstream cannot run longer
inputs. ``beyond_l_max`` chooses what happens:

- ``"error"``: refuse (a clear ValueError), the released behaviour made explicit.
- ``"zero"``: the filter keeps its trained support; taps at lags >= ``l_max`` are zero. Each Hyena layer then
  sees at most the ``l_max`` most recent positions (plus nothing else changes): outputs at positions
  ``< l_max`` equal the model's own, and longer inputs are processed as by a sliding causal window.
- ``"extrapolate"``: the positional features are computed for the needed length with the same normalisation
  (``t > 1`` beyond ``l_max``), so the filter MLP is evaluated where it was never trained; the exponential
  decay continues and the ``shift`` floor stays. Use it knowingly (e.g. to fine-tune at a longer length).

Cached generation. `init_state` evaluates the filter once; `step` then costs O(d^2 + d log^2 t) per token (the
projections plus an amortised online convolution) instead of an FFT over the whole sequence per token. The
online convolution is the classic relaxed (dyadic-block) scheme: after token t, the block of the last
s = lowbit(t + 1) gated inputs is convolved, by one FFT of size 2s, into the next s outputs. Every pair
(source, target) is counted exactly once: it belongs to the level of the highest bit where the two positions
differ. A loop of `step` equals `forward` (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from longseq.kernels import _backend, causal_conv1d, causal_conv1d_update, fftconv
from longseq.kernels.causal_conv1d.torch_conv import causal_conv1d_channels_last
from longseq.kernels.fftconv.torch_fftconv import fft_size, fftconv_spectrum, filter_spectrum

BeyondLMax = Literal["error", "zero", "extrapolate"]


def positional_features(emb_dim: int, l_max: int, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HyenaDNA's filter inputs for positions ``start <= i < stop``, normalised by ``l_max``.

    Returns:
        z (1, stop - start, emb_dim): ``[t, cos(f w), -sin(f w)]`` with ``t = i / (l_max - 1)``,
        ``w = 2 pi i / l_max``, ``f = linspace(1e-4, bands - 1, bands)``, ``bands = (emb_dim - 1) // 2``;
        t (1, stop - start, 1).
    """
    bands = (emb_dim - 1) // 2
    if start == 0 and stop == l_max:
        # Bit-for-bit the upstream construction (linspace, complex exp), so a fresh buffer equals a loaded one.
        t = torch.linspace(0, 1, l_max)[None, :, None]
        w = 2 * math.pi * torch.linspace(0, l_max - 1, l_max)[None, :, None] / l_max
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]
        z = torch.exp(-1j * f * w)
        return torch.cat([t, z.real, z.imag], dim=-1), t
    i = torch.arange(start, stop, dtype=torch.float64)[None, :, None]
    t = i / (l_max - 1)
    fw = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float64)[None, None] * (2 * math.pi * i / l_max)
    return torch.cat([t, torch.cos(fw), -torch.sin(fw)], dim=-1).float(), t.float()


class PositionalEmbedding(nn.Module):
    """The filter's positional features for ``0 <= i < l_max`` as buffers ``z`` (1, l_max, emb_dim) and ``t``
    (1, l_max, 1). Non-trainable, as in the original code (the HF port made ``z`` a parameter that never moved)."""

    def __init__(self, emb_dim: int, l_max: int, *, device=None):
        super().__init__()
        self.emb_dim = emb_dim
        self.l_max = l_max
        z, t = positional_features(emb_dim, l_max, 0, l_max)
        self.register_buffer("z", z.to(device))
        self.register_buffer("t", t.to(device))

    def forward(self, l: int, *, extrapolate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Features for the first ``l`` positions: z (1, l, emb_dim), t (1, l, 1)."""
        if l <= self.l_max:
            return self.z[:, :l], self.t[:, :l]
        if not extrapolate:
            raise ValueError(f"{l} positions requested from features built for l_max={self.l_max}")
        z, t = positional_features(self.emb_dim, self.l_max, self.l_max, l)
        return torch.cat([self.z, z.to(self.z)], dim=1), torch.cat([self.t, t.to(self.t)], dim=1)


class Sin(nn.Module):
    """sin(freq * x) with a learnable (1, dim) frequency, initialised to ``w``."""

    def __init__(self, dim: int, *, w: float = 10.0, train_freq: bool = True, device=None, dtype=None):
        super().__init__()
        freq = w * torch.ones(1, dim, device=device, dtype=dtype)
        if train_freq:
            self.freq = nn.Parameter(freq)
        else:  # upstream keeps a fixed frequency out of the state dict
            self.register_buffer("freq", freq, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ExponentialModulation(nn.Module):
    """h <- h * (exp(-t |deltas|) + shift): a per-channel decay window over the filter taps.

    ``deltas`` (1, 1, d) span ``log(target) / slow_decay_pct`` .. ``log(target) / fast_decay_pct``. ``shift`` is
    0.05 in the released HyenaDNA code (standalone and Hugging Face) and 0.0 in the Lightning training code.
    """

    def __init__(
        self,
        d_model: int,
        *,
        modulate: bool = True,
        shift: float = 0.05,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        device=None,
    ):
        super().__init__()
        self.modulate = modulate
        self.shift = shift
        max_decay = math.log(target) / fast_decay_pct
        min_decay = math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, d_model, device=device)[None, None])

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """t (1, l, 1), h (1, l, d) -> (1, l, d)."""
        if not self.modulate:
            return h
        return h * (torch.exp(-t * self.deltas.abs()) + self.shift)


class HyenaFilter(nn.Module):
    """The implicit long filter: an MLP with Sin activations over positional features, times a decay window.

    Every parameter here is marked ``_no_weight_decay`` (upstream trains the filter with weight decay 0).

    Args:
        d_model: channels d.
        l_max: the length the positional features are normalised by (the checkpoint's ``max_seq_len``).
        emb_dim: positional feature width (odd, >= 3).
        filter_order: width of the filter MLP.
        num_inner_mlps: hidden Linear + Sin pairs after the first.
        w, train_freq: the Sin frequency and whether it is learned.
        modulate, shift: the exponential window (see `ExponentialModulation`).
        beyond_l_max: "error", "zero" or "extrapolate" (module docstring).
    """

    def __init__(
        self,
        d_model: int,
        *,
        l_max: int,
        emb_dim: int = 5,
        filter_order: int = 64,
        num_inner_mlps: int = 2,
        w: float = 10.0,
        train_freq: bool = True,
        modulate: bool = True,
        shift: float = 0.05,
        beyond_l_max: BeyondLMax = "error",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd and >= 3 (time, cosine, sine); got {emb_dim}")
        if l_max < 2:
            raise ValueError(f"l_max must be >= 2; got {l_max}")
        if beyond_l_max not in ("error", "zero", "extrapolate"):
            raise ValueError(f"beyond_l_max must be 'error', 'zero' or 'extrapolate'; got {beyond_l_max!r}")
        dd = {"device": device, "dtype": dtype}
        self.l_max = l_max
        self.beyond_l_max = beyond_l_max
        self.bias = nn.Parameter(torch.randn(d_model, **dd))
        self.pos_emb = PositionalEmbedding(emb_dim, l_max, device=device)
        act = Sin(filter_order, w=w, train_freq=train_freq, **dd)
        layers: list[nn.Module] = [nn.Linear(emb_dim, filter_order, **dd), act]
        for _ in range(num_inner_mlps):
            layers += [nn.Linear(filter_order, filter_order, **dd), act]
        layers.append(nn.Linear(filter_order, d_model, bias=False, **dd))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = ExponentialModulation(d_model, modulate=modulate, shift=shift, device=device)
        for p in self.parameters():
            p._no_weight_decay = True

    def support(self, l: int) -> int:
        """How many filter taps a length-``l`` input uses."""
        if l <= self.l_max or self.beyond_l_max == "extrapolate":
            return l
        if self.beyond_l_max == "zero":
            return self.l_max
        raise ValueError(
            f"input length {l} exceeds the Hyena filter's l_max={self.l_max}; window the input, or build the "
            "model with beyond_l_max='zero' or 'extrapolate'"
        )

    def filter(self, l: int) -> torch.Tensor:
        """The filter for a length-``l`` input: (d, support(l)) taps, lag 0 first."""
        z, t = self.pos_emb(self.support(l), extrapolate=self.beyond_l_max == "extrapolate")
        h = self.modulation(t, self.implicit_filter(z.to(self.bias.dtype)))
        return h[0].transpose(0, 1)


@dataclass
class HyenaState:
    """What `HyenaOperator.step` carries between tokens (all tensors updated in place).

    Attributes:
        conv: (b, 3d, w - 1) the last inputs of the short filter.
        history: (b, d, m) float32, the gated inputs ``x1 * v`` of every position so far.
        pending: (b, d, m) float32, long-convolution sums already pushed into future positions.
        taps: (d, m) float32, the long filter evaluated once for m = max_seqlen positions.
        taps_f: rfft of ``taps[:, :2s]`` (size 2s) for block sizes s = 1, 2, 4, ...
        seqlen: positions consumed. origin: where the dyadic blocks start (after the last parallel chunk).
    """

    conv: torch.Tensor
    history: torch.Tensor
    pending: torch.Tensor
    taps: torch.Tensor
    taps_f: list[torch.Tensor]
    seqlen: int = 0
    origin: int = 0


class HyenaOperator(nn.Module):
    """Hyena of order 2 (HyenaDNA's mixer): (b, l, d) -> (b, l, d), causal.

    Args:
        d_model: width d.
        l_max: the length the filter's positional features are normalised by (HyenaDNA's ``max_seq_len``).
        filter_order, emb_dim, num_inner_mlps, activation_freq, train_freq, modulate, shift: the implicit
            filter (`HyenaFilter`); HyenaDNA releases use 64, 5, 2, 10, True, True, 0.05.
        short_filter_order: width of the causal depthwise short convolution (3).
        dropout: on the gated input ``x1 * v`` (HyenaDNA's ``hyena_dropout``).
        beyond_l_max: what inputs longer than ``l_max`` mean: "error", "zero" or "extrapolate" (module docstring).
    """

    def __init__(
        self,
        d_model: int,
        *,
        l_max: int,
        filter_order: int = 64,
        emb_dim: int = 5,
        short_filter_order: int = 3,
        num_inner_mlps: int = 2,
        activation_freq: float = 10.0,
        train_freq: bool = True,
        modulate: bool = True,
        shift: float = 0.05,
        dropout: float = 0.0,
        beyond_l_max: BeyondLMax = "error",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if short_filter_order < 1:
            raise ValueError(f"short_filter_order must be >= 1; got {short_filter_order}")
        dd = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.l_max = l_max
        inner = 3 * d_model
        self.in_proj = nn.Linear(d_model, inner, **dd)
        self.short_filter = nn.Conv1d(
            inner, inner, short_filter_order, padding=short_filter_order - 1, groups=inner, **dd
        )
        self.filter_fn = HyenaFilter(
            d_model,
            l_max=l_max,
            emb_dim=emb_dim,
            filter_order=filter_order,
            num_inner_mlps=num_inner_mlps,
            w=activation_freq,
            train_freq=train_freq,
            modulate=modulate,
            shift=shift,
            beyond_l_max=beyond_l_max,
            **dd,
        )
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, d_model, **dd)
        self._spectrum: tuple[tuple, torch.Tensor] | None = None  # (key, k_f), see `_filter_spectrum`

    def _streams(self, x: torch.Tensor, conv: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """x (b, l, d) -> x0, gated (b, d, l) each; continues the short conv from ``conv`` (updated) if given."""
        u = self.in_proj(x).transpose(1, 2)
        weight, bias = self.short_filter.weight[:, 0], self.short_filter.bias
        if conv is None:
            uc = causal_conv1d(u, weight, bias)
        else:
            uc, final = causal_conv1d(u, weight, bias, initial_states=conv, return_final_states=True)
            conv.copy_(final)
        x0, x1, v = uc.split(self.d_model, dim=1)
        return x0, self.dropout(v * x1)

    def forward(self, x: torch.Tensor, state: HyenaState | None = None) -> torch.Tensor:
        """x (b, l, d) -> (b, l, d). With a state: continue after its positions and update it (prefill)."""
        if state is not None:
            return self._forward_cached(x, state)
        if _backend.choose(x, None) == "torch":
            return self._forward_torch(x)
        x0, gated = self._streams(x, None)
        k = self.filter_fn.filter(x.shape[1])
        y = fftconv(gated, k.to(gated.dtype), self.filter_fn.bias.to(gated.dtype))
        return self.out_proj((y * x0).transpose(1, 2))

    def _forward_torch(self, x: torch.Tensor) -> torch.Tensor:
        """The same function as the kernel path of `forward`, arranged for the CPU (the torch backend).

        The short conv runs in the (b, l, 3d) layout in_proj produces (shifted multiply-adds, no transposed
        copy); only the gated stream is transposed, once, into the FFT's padded input; the filter's spectrum is
        cached while gradients are off. tests/core/test_hyena.py pins it to the kernel path, outputs and gradients.
        """
        b, l, d = x.shape
        uc = causal_conv1d_channels_last(self.in_proj(x), self.short_filter.weight[:, 0], self.short_filter.bias)
        x0, x1, v = uc.split(d, dim=-1)
        k_f, n = self._filter_spectrum(l, uc.dtype)
        # The gated stream goes straight into the FFT's zero-padded (b, d, n) input: one transposing write.
        padded = uc.new_empty(b, d, n)
        padded[..., l:] = 0
        padded[..., :l] = self.dropout(v * x1).transpose(1, 2)
        y = fftconv_spectrum(padded, l, k_f, self.filter_fn.bias.to(uc.dtype))
        return self.out_proj(x0 * y.transpose(1, 2))

    def _filter_spectrum(self, l: int, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
        """The long filter's spectrum for a length-``l`` input in ``dtype``, and the FFT size.

        With gradients off (eval, `torch.no_grad`, `torch.inference_mode`) the last one computed is kept and reused
        by the next call at the same length while the filter's tensors are the same: the key holds each tensor's
        storage and version counter, which every in-place write (an optimizer step, `load_state_dict`) advances.
        """
        n = fft_size(l, self.filter_fn.support(l))
        tensors = [*self.filter_fn.parameters(), *self.filter_fn.buffers()]
        cacheable = not torch.is_grad_enabled() and not any(t.is_inference() for t in tensors)
        key = (l, n, dtype, *((t.data_ptr(), t._version) for t in tensors)) if cacheable else None
        if key is not None and self._spectrum is not None and self._spectrum[0] == key:
            return self._spectrum[1], n
        k_f = filter_spectrum(self.filter_fn.filter(l).to(dtype), n)
        self._spectrum = (key, k_f) if key is not None else None
        return k_f, n

    def init_state(self, batch_size: int, *, max_seqlen: int | None = None, device=None, dtype=None) -> HyenaState:
        """An empty state for up to ``max_seqlen`` positions (default ``l_max``); evaluates the filter once."""
        m = max_seqlen or self.l_max
        device = device or self.in_proj.weight.device
        with torch.no_grad():
            k = self.filter_fn.filter(m).float().to(device)
        taps = nn.functional.pad(k, (0, m - k.shape[1]))
        taps_f, s = [], 1
        while s < m:
            window = nn.functional.pad(taps[:, : 2 * s], (0, max(0, 2 * s - m)))
            taps_f.append(torch.fft.rfft(window, n=2 * s))
            s *= 2
        d = self.d_model
        width = self.short_filter.kernel_size[0]
        return HyenaState(
            conv=torch.zeros(batch_size, 3 * d, width - 1, device=device, dtype=dtype or self.in_proj.weight.dtype),
            history=torch.zeros(batch_size, d, m, device=device),
            pending=torch.zeros(batch_size, d, m, device=device),
            taps=taps,
            taps_f=taps_f,
        )

    def _forward_cached(self, x: torch.Tensor, state: HyenaState) -> torch.Tensor:
        """A chunk of positions at once: one FFT over the whole cache, which also refills ``pending``."""
        t0, l = state.seqlen, x.shape[1]
        m = state.history.shape[-1]
        if t0 + l > m:
            raise ValueError(f"the state holds {m} positions; {t0} used, {l} more requested")
        x0, gated = self._streams(x, state.conv)
        past = state.history[..., :t0]
        signal = torch.cat([past, gated.float(), past.new_zeros(*past.shape[:2], m - t0 - l)], dim=-1)
        conv = fftconv(signal, state.taps, torch.zeros_like(state.taps[:, 0]))
        state.history[..., t0 : t0 + l] = gated.detach().float()
        state.pending[..., t0 + l :] = conv[..., t0 + l :].detach()
        state.seqlen = state.origin = t0 + l
        y = conv[..., t0 : t0 + l].to(gated.dtype) + self.filter_fn.bias.to(gated.dtype)[:, None] * gated
        return self.out_proj((y * x0).transpose(1, 2))

    def step(self, x: torch.Tensor, state: HyenaState) -> torch.Tensor:
        """One token: x (b, d) -> (b, d); the state is updated in place."""
        t = state.seqlen
        m = state.history.shape[-1]
        if t >= m:
            raise ValueError(f"the state is full ({m} positions); init_state with a larger max_seqlen")
        weight, bias = self.short_filter.weight[:, 0], self.short_filter.bias
        uc = causal_conv1d_update(self.in_proj(x), state.conv, weight, bias)
        x0, x1, v = uc.split(self.d_model, dim=-1)
        gated = self.dropout(v * x1)
        state.history[..., t] = gated.float()
        y = state.pending[..., t] + (state.taps[:, 0] + self.filter_fn.bias.float()) * gated.float()
        # Push the dyadic block ending at t into the next s outputs (lags 1 .. 2s - 1 of the filter).
        s = (t - state.origin + 1) & -(t - state.origin + 1)
        stop = min(t + 1 + s, m)
        if stop > t + 1:
            block = state.history[..., t + 1 - s : t + 1]
            spread = torch.fft.irfft(torch.fft.rfft(block, n=2 * s) * state.taps_f[s.bit_length() - 1], n=2 * s)
            state.pending[..., t + 1 : stop] += spread[..., s : s + stop - t - 1]
        state.seqlen = t + 1
        return self.out_proj(y.to(x.dtype) * x0)
