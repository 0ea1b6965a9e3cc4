"""The released per-direction loops of LocalMamba's mixers, on the reference kernels: the spec that the batched
mixers in `mixers.py` are tested against (outputs and gradients).

Each direction is scanned with the reshapes of the released code (`local_mamba.scans.scan_ref`), run through its own
causal conv and selective scan one at a time, and put back with `unscan_ref`, as ``MultiMamba.forward`` and
``multi_selective_scan`` do upstream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longseq.kernels.causal_conv1d import causal_conv1d_ref
from longseq.kernels.selective_scan import selective_scan_ref
from longseq.vision.local_mamba.mixers import MultiScanMamba, MultiScanSS2D
from longseq.vision.local_mamba.scans import scan_ref, unscan_ref


def _ssm_ref(u, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D, z=None):
    """One direction: u (b, d, s) -> y (b, d, s)."""
    r, n = dt_proj_weight.shape[1], A_log.shape[1]
    dt, B, C = F.linear(u.transpose(1, 2), x_proj_weight).split([r, n, n], dim=-1)
    delta = F.linear(dt, dt_proj_weight).transpose(1, 2)
    return selective_scan_ref(
        u,
        delta,
        -torch.exp(A_log.float()),
        B.transpose(1, 2),
        C.transpose(1, 2),
        D.float(),
        z=z,
        delta_bias=dt_proj_bias.float(),
        delta_softplus=True,
    )


def multi_scan_mamba_ref(
    mixer: MultiScanMamba, x: torch.Tensor, grid: tuple[int, int], cls_position: int | None = None
) -> torch.Tensor:
    """`MultiScanMamba.forward`, one direction at a time (upstream ``MultiMamba.forward`` steps 1-7)."""
    xz = mixer.in_proj(x)
    c = cls_position
    if c is not None:  # 1. take the class token out of the 2D scan
        cls, xz = xz[:, c : c + 1], torch.cat([xz[:, :c], xz[:, c + 1 :]], dim=1)
    outs = []
    for k, direction in enumerate(mixer.directions):
        p = mixer.direction_params(k)
        seq = scan_ref(xz, direction, grid)  # 2. scan
        if c is not None:  # 3. class token into the middle of the sequence
            seq = torch.cat([seq[:, :c], cls, seq[:, c:]], dim=1)
        u, z = seq.transpose(1, 2).chunk(2, dim=1)
        u = causal_conv1d_ref(u, p["conv_weight"], p["conv_bias"], activation="silu")
        y = _ssm_ref(u, p["x_proj_weight"], p["dt_proj_weight"], p["dt_proj_bias"], p["A_log"], p["D"], z=z)
        y = y.transpose(1, 2)  # 4. ssm
        if c is not None:  # 5. class token out again
            cls_y, y = y[:, c : c + 1], torch.cat([y[:, :c], y[:, c + 1 :]], dim=1)
        y = unscan_ref(y, direction, grid)  # 6. back to token order
        if c is not None:  # 7. and back into its place
            y = torch.cat([y[:, :c], cls_y, y[:, c:]], dim=1)
        outs.append(mixer.attn(y))
    return mixer.out_proj(mixer.multi_scan(torch.stack(outs, dim=1)))


def multi_scan_ss2d_ref(mixer: MultiScanSS2D, x: torch.Tensor) -> torch.Tensor:
    """`MultiScanSS2D.forward`, one direction at a time (upstream ``SS2D.forward``)."""
    x, z = mixer.in_proj(x).chunk(2, dim=-1)
    x = F.silu(mixer.conv2d(x.permute(0, 3, 1, 2)))
    b, d, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    outs = []
    for k, direction in enumerate(mixer.directions):
        u = scan_ref(tokens, direction, (h, w)).transpose(1, 2)
        rows = slice(k * d, (k + 1) * d)
        y = _ssm_ref(
            u,
            mixer.x_proj_weight[k],
            mixer.dt_projs_weight[k],
            mixer.dt_projs_bias[k],
            mixer.A_logs[rows],
            mixer.Ds[rows],
        )
        outs.append(unscan_ref(y.transpose(1, 2), direction, (h, w)))
    y = mixer.multi_scan(torch.stack(outs, dim=1)).view(b, h, w, d)
    return mixer.out_proj(mixer.out_norm(y) * F.silu(z))
