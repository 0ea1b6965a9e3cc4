"""BTB3D training: losses, the three stages, the discriminators, exact resume, the train3d CLI."""

from __future__ import annotations

import dataclasses

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from longseq.core.checkpoint import CheckpointError
from longseq.core.train import TrainerConfig, build_trainer, fit
from longseq.vision.btb3d.dataset import ExcerptBatches
from longseq.vision.btb3d.discriminators import Discriminator2D, Discriminator3D
from longseq.vision.btb3d.losses import LeCamEMA, PerceptualLoss, discriminator_loss, generator_loss, r1_penalty
from longseq.vision.btb3d.model import BTB3D, BTB3D_PRESETS
from longseq.vision.btb3d.task import BTB3DTask, ExcerptDataModule
from longseq.vision.btb3d.train_config import BTB3DTrainConfig
from longseq.vision.cli import main

CONFIG = BTB3DTrainConfig(crop_size=16, warmup_steps=1, r1_every=2, entropy_decay_steps=4)


def tiny_model() -> BTB3D:
    return BTB3D(BTB3D_PRESETS["btb3d-tiny"])


def batches(length: int = 4, depth: int = 9, slice_every: int = 2) -> ExcerptBatches:
    volumes = [np.random.default_rng(0).uniform(-1, 1, (19, 20, 24)).astype(np.float32)]
    return ExcerptBatches(volumes, depth=depth, size=16, batch_size=2, length=length, slice_every=slice_every)


def trainer(epochs: int, callbacks=(), **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(callbacks),
        callbacks=list(callbacks),
        **kwargs,
    )


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_gan_losses_and_lecam():
    real, fake = torch.tensor([[2.0], [0.5]]), torch.tensor([[-1.0], [0.3]])
    expected_d = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean())
    lecam = LeCamEMA(decay=0.5)
    lecam.update(real, fake)
    torch.testing.assert_close(lecam.real_ema, torch.tensor(0.625))
    torch.testing.assert_close(lecam.fake_ema, torch.tensor(-0.175))
    penalty = lecam.penalty(real, fake)
    torch.testing.assert_close(penalty, torch.tensor((1.25 + 0.175) ** 2 + (0.625 + 0.35) ** 2))


def test_r1_penalty_is_the_squared_input_gradient():
    x = torch.randn(3, 1, 9, 16, 16, requires_grad=True)
    disc = Discriminator3D(spatial_size=16, num_frames=9)
    logit = disc(x)
    penalty = r1_penalty(x, logit)
    (grad,) = torch.autograd.grad(disc(x).sum(), x)
    torch.testing.assert_close(penalty, grad.flatten(1).pow(2).sum(1).mean())
    penalty.backward()  # the penalty itself trains the discriminator
    assert disc.conv_in.weight.grad is not None


def test_discriminators_check_their_input_size():
    assert Discriminator2D(spatial_size=16)(torch.randn(2, 1, 16, 16)).shape == (2, 1)
    with pytest.raises(ValueError, match="built for inputs"):
        Discriminator3D(spatial_size=16, num_frames=9)(torch.randn(1, 1, 17, 16, 16))


def test_entropy_weight_schedule():
    config = BTB3DTrainConfig(entropy_weight=0.1, entropy_scale=3.0, entropy_decay_steps=10)
    assert config.entropy_weight_at(0) == pytest.approx(0.3)
    assert config.entropy_weight_at(5) == pytest.approx(0.2)
    assert config.entropy_weight_at(10) == config.entropy_weight_at(99) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="disc_frames"):
        BTB3DTrainConfig(disc_frames=10)


def test_dataset_is_deterministic_and_alternates_2d():
    data = batches(slice_every=2)
    assert data[0].shape == (2, 1, 9, 16, 16) and data[1].shape == (2, 1, 1, 16, 16)
    assert torch.equal(data[2], batches(slice_every=2)[2])
    data.set_epoch(1)
    assert not torch.equal(data[2], batches(slice_every=2)[2])


def test_stage1_trains_tokenizer_and_both_discriminators():
    task = BTB3DTask(tiny_model(), CONFIG, total_steps=10)  # the cosine schedule reaches 0 at the last step
    before = params(task)
    trainer(1).fit(task, DataLoader(batches(length=2), batch_size=None))  # one 3D batch, one 2D batch
    assert int(task.step) == 2
    unchanged = [k for k, v in params(task).items() if torch.equal(v, before[k])]
    assert not unchanged
    assert float(task.lecam3d.real_ema) != 0 and float(task.lecam2d.real_ema) != 0


def test_stage3_freezes_the_encoder():
    task = BTB3DTask(tiny_model(), dataclasses.replace(CONFIG, stage=3, use_gan=False), total_steps=10)
    before = params(task.model)
    trainer(1).fit(task, DataLoader(batches(length=2, depth=17, slice_every=0), batch_size=None))
    after = params(task.model)
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("encoder."))
    assert all(not torch.equal(after[k], before[k]) for k in after if k.startswith("decoder."))


def test_resume_mid_epoch_continues_exactly(tmp_path):
    def run(batches_to_run: int, name: str, resume=None):
        torch.manual_seed(0)
        task = BTB3DTask(tiny_model(), CONFIG, total_steps=10)
        config = TrainerConfig(
            max_steps=2 * batches_to_run,
            gradient_clip_val=None,
            checkpoint_dir=str(tmp_path / name),
            checkpoint_every_n_steps=2,
            logger="none",
            progress_bar=False,
            accelerator="cpu",
            devices=1,
        )
        fit(build_trainer(config), task, ExcerptDataModule(batches(length=2, slice_every=0)), resume=resume)
        return task

    straight = run(2, "straight")
    run(1, "interrupted")  # stops after the first of the epoch's two batches
    resumed = run(2, "interrupted", resume="last")
    assert int(resumed.step) == 2  # the second step applies R1 and updates the LeCam EMAs
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_perceptual_loss_is_pluggable(tmp_path):
    net = torchvision.models.get_model("squeezenet1_1", weights=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "squeezenet.safetensors")
    loss = PerceptualLoss(arch="squeezenet1_1", weights=tmp_path / "squeezenet.safetensors")
    x = torch.rand(1, 1, 1, 16, 16) * 2 - 1
    assert float(loss(x, x)) == 0 and float(loss(x, -x)) > 0
    assert all(not p.requires_grad for p in loss.parameters())
    config = dataclasses.replace(
        CONFIG, perceptual_arch="squeezenet1_1", perceptual_weights=str(tmp_path / "squeezenet.safetensors")
    )
    task = BTB3DTask(tiny_model(), config, total_steps=1)
    assert task.perceptual is not None and not any(k.startswith("perceptual.") for k in task.state_dict())
    assert BTB3DTask(tiny_model(), CONFIG, total_steps=1).perceptual is None  # no weights: off
    with pytest.raises(CheckpointError, match="not found"):
        PerceptualLoss(arch="vgg16", weights=tmp_path / "vgg16.pth")


def _train3d_argv(tmp_path, steps: int) -> list[str]:
    import nibabel as nib

    scan = tmp_path / "scan.nii.gz"
    if not scan.exists():
        volume = np.random.default_rng(0).uniform(-1000, 1000, (24, 20, 19)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), scan)
    return [
        "train3d",
        "--scans",
        f"[{scan}]",
        "--out",
        str(tmp_path / "model"),
        "--spacing",
        "null",
        "--steps",
        str(steps),
        "--steps_per_epoch",
        "1",
        "--train.crop_size",
        "16",
        "--checkpoint_dir",
        str(tmp_path / "ckpt"),
        "--log_dir",
        str(tmp_path / "logs"),
    ]


def test_train3d_cli_end_to_end(tmp_path, capsys):
    assert main(_train3d_argv(tmp_path, 1)) == 0, capsys.readouterr().err
    assert "trained 1 steps" in capsys.readouterr().out
    assert BTB3D.from_pretrained(tmp_path / "model").config == BTB3D_PRESETS["btb3d-tiny"]
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scans", "[missing.nii]"], "no such file"),
        (["--steps", "0"], "positive"),
        (["--depth", "10"], "depth"),
        (["--model", "nope"], "neither a checkpoint directory nor a preset"),
    ],
)
def test_train3d_bad_arguments(tmp_path, capsys, extra, message):
    argv = _train3d_argv(tmp_path, 1) + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_train3d_cli_resume(tmp_path, capsys):
    assert main(_train3d_argv(tmp_path, 2)) == 0
    assert main([*_train3d_argv(tmp_path, 3), "--resume", "true"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out
