"""Train residual-VQ codebooks on two CPU processes (gloo), each rank on its own data; run by
tests/speech/test_rvq_ddp.py.

    python tests/speech/rvq_ddp_worker.py OUT_DIR

Each rank writes the buffers of every quantizer of `quantizers()` after `batches(rank)` to
OUT_DIR/rank<r>.safetensors.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import save_file

from longseq.speech.codecs.prob_rvq import ProbabilisticRVQ
from longseq.speech.codecs.rvq import ResidualVQ

WORLD = 2


def quantizers() -> dict[str, ResidualVQ]:
    """The same fresh quantizers on every rank.

    "plain" and "prob" start from random batch vectors and, with a fast decay, restart dead codewords within
    three batches (the paths that draw vectors). "plain_fixed" and "prob_fixed" start from fixed codewords and
    never restart: every update is then the EMA step of the whole batch, comparable with one process.
    """
    torch.manual_seed(0)
    made = {
        "plain": ResidualVQ(4, 2, 8, decay=0.1, quantizer_dropout=0.0),
        "prob": ProbabilisticRVQ(4, 2, 8, decay=0.1),
        "plain_fixed": ResidualVQ(4, 2, 8, quantizer_dropout=0.0),
        "prob_fixed": ProbabilisticRVQ(4, 2, 8),
    }
    for name in ("plain_fixed", "prob_fixed"):
        for codebook in made[name].codebooks:
            codebook.embed.copy_(torch.randn_like(codebook.embed))
            codebook.embed_sum.copy_(codebook.embed)
            codebook.initialized.fill_(True)
            codebook.dead_threshold = 0.0
    return made


def batches(rank: int) -> list[torch.Tensor]:
    """Three latent batches (2, 4, 6) of this rank's own data, of very different scales (codewords die)."""
    generator = torch.Generator().manual_seed(100 + rank)
    return [torch.randn(2, 4, 6, generator=generator) * scale for scale in (1.0, 5.0, 0.2)]


def run(rank: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=WORLD)
    # A different random stream per rank: only what is broadcast can make the codebooks agree.
    torch.manual_seed(1000 + rank)
    tensors = {}
    for name, quantizer in quantizers().items():
        quantizer.train()
        for z in batches(rank):
            quantizer(z)
        tensors.update({f"{name}.{k}": v.contiguous() for k, v in quantizer.state_dict().items()})
    save_file(tensors, f"{out_dir}/rank{rank}.safetensors")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1],), nprocs=WORLD)
