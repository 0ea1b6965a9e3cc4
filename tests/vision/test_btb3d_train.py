"""BTB3D training: losses, the three stages, the discriminators, the train3d command (exact resume included)."""

from __future__ import annotations

import dataclasses

import lightning as L
import nibabel as nib
import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from longseq.core.checkpoint import CheckpointError
from longseq.core.train import OptimizerConfig
from longseq.vision.btb3d.dataset import ExcerptBatches
from longseq.vision.btb3d.discriminators import Discriminator2D, Discriminator3D
from longseq.vision.btb3d.losses import LeCamEMA, PerceptualLoss, discriminator_loss, generator_loss, r1_penalty
from longseq.vision.btb3d.model import BTB3D, BTB3D_PRESETS
from longseq.vision.btb3d.task import BTB3DTask
from longseq.vision.btb3d.train_config import BTB3DTaskConfig, VolumeDataConfig
from longseq.vision.cli import main
from tests.resume_harness import check_resume

CONFIG = BTB3DTaskConfig(r1_every=2, entropy_decay_steps=4)
OPTIMIZER = OptimizerConfig(lr=1e-4, betas=(0.0, 0.99), weight_decay=0.0, warmup_steps=1)  # never a zero lr


def tiny_model() -> BTB3D:
    return BTB3D(BTB3D_PRESETS["btb3d-tiny"])


def task(config: BTB3DTaskConfig = CONFIG) -> BTB3DTask:
    return BTB3DTask(tiny_model(), config, optimizer=OPTIMIZER, crop_size=16, gradient_clip_val=0.5)


def batches(length: int = 4, depth: int = 9, slice_every: int = 2) -> ExcerptBatches:
    volumes = [np.random.default_rng(0).uniform(-1, 1, (19, 20, 24)).astype(np.float32)]
    return ExcerptBatches(volumes, depth=depth, size=16, batch_size=2, length=length, slice_every=slice_every)


def trainer(epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
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
    config = BTB3DTaskConfig(entropy_weight=0.1, entropy_scale=3.0, entropy_decay_steps=10)
    assert config.entropy_weight_at(0) == pytest.approx(0.3)
    assert config.entropy_weight_at(5) == pytest.approx(0.2)
    assert config.entropy_weight_at(10) == config.entropy_weight_at(99) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="disc_frames"):
        BTB3DTaskConfig(disc_frames=10)


def test_data_defaults_follow_the_stage():
    data = VolumeDataConfig(scans=["a.nii.gz"])
    assert (data.stage_depth(1), data.stage_slice_every(1)) == (9, 2)
    assert (data.stage_depth(2), data.stage_slice_every(2)) == (41, 0)
    data = VolumeDataConfig(scans=["a.nii.gz"], depth=17, slice_every=0)
    assert (data.stage_depth(1), data.stage_slice_every(1)) == (17, 0)


def test_dataset_is_deterministic_and_alternates_2d():
    data = batches(slice_every=2)
    assert data[0].shape == (2, 1, 9, 16, 16) and data[1].shape == (2, 1, 1, 16, 16)
    assert torch.equal(data[2], batches(slice_every=2)[2])
    data.set_epoch(1)
    assert not torch.equal(data[2], batches(slice_every=2)[2])


def test_stage1_trains_tokenizer_and_both_discriminators():
    module = task(dataclasses.replace(CONFIG, r1_every=1))
    before = params(module)
    fit = trainer(1)
    fit.fit(module, DataLoader(batches(length=2), batch_size=None))  # one 3D batch, one 2D batch
    assert fit.global_step == 2  # one optimizer step per batch, generator and discriminators together
    unchanged = [k for k, v in params(module).items() if torch.equal(v, before[k])]
    assert not unchanged
    assert float(module.lecam3d.real_ema) != 0 and float(module.lecam2d.real_ema) != 0


def test_the_generator_loss_does_not_train_the_discriminator():
    # With the discriminator's own loss switched off (d_weight, LeCam, R1 at 0), it must not move at all.
    module = task(dataclasses.replace(CONFIG, d_weight=0.0, lecam_weight=0.0, r1_weight=0.0, g_weight=1.0))
    before = params(module)
    trainer(1).fit(module, DataLoader(batches(length=1, slice_every=0), batch_size=None))
    after = params(module)
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith(("disc3d.", "disc2d.")))
    assert not torch.equal(after["model.encoder.conv_in.weight"], before["model.encoder.conv_in.weight"])


def test_stage3_freezes_the_encoder():
    module = task(dataclasses.replace(CONFIG, stage=3, use_gan=False))
    before = params(module.model)
    trainer(1).fit(module, DataLoader(batches(length=2, depth=17, slice_every=0), batch_size=None))
    after = params(module.model)
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("encoder."))
    assert all(not torch.equal(after[k], before[k]) for k in after if k.startswith("decoder."))


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
    module = task(config)
    assert module.perceptual is not None and not any(k.startswith("perceptual.") for k in module.state_dict())
    assert task(CONFIG).perceptual is None  # no weights: off
    with pytest.raises(CheckpointError, match="not found"):
        PerceptualLoss(arch="vgg16", weights=tmp_path / "vgg16.pth")


def write_scan(path) -> str:
    volume = np.random.default_rng(0).uniform(-1000, 1000, (24, 20, 19)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    return str(path)


def train3d_argv(tmp_path, output, steps: int) -> list[str]:
    """A run of a few seconds: btb3d-tiny on one random scan, 16x16 crops, 9-slice excerpts every other batch."""
    scan = tmp_path / "scan.nii.gz"
    if not scan.exists():
        write_scan(scan)
    return [
        "train3d",
        "--output",
        str(output),
        "--data.scans",
        f"[{scan}]",
        "--data.spacing",
        "null",
        "--data.crop_size",
        "16",
        "--data.batches_per_epoch",
        "3",
        "--trainer.max_steps",
        str(steps),
        "--trainer.progress_bar",
        "false",
        "--optimizer.warmup_steps",
        "1",
        "--task.r1_every",
        "2",
    ]


def test_train3d_end_to_end(tmp_path, capsys):
    argv = train3d_argv(tmp_path, tmp_path / "model", 1)
    assert main([*argv, "--trainer.log_dir", str(tmp_path / "logs")]) == 0, capsys.readouterr().err
    assert "trained 1 steps" in capsys.readouterr().out
    loaded = BTB3D.from_pretrained(tmp_path / "model")
    assert loaded.config == BTB3D_PRESETS["btb3d-tiny"] and not loaded.training


def test_train3d_resumes_exactly(tmp_path, monkeypatch):
    check_resume(
        main,
        lambda output, steps: train3d_argv(tmp_path, output, steps),
        lambda output: ["--model", str(output)],
        tmp_path,
        monkeypatch,
        total=4,
        stop=2,  # mid-epoch (3 batches an epoch): steps 0-3 take 3D, 2D, 3D, 3D batches, R1 at steps 1 and 3
    )


def test_train3d_prints_its_config(capsys):
    assert main(["train3d", "--trainer.max_steps", "7", "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert "  max_steps: 7\n" in printed and "  stage: 1\n" in printed and "  scans: null\n" in printed


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data.scans", "[missing.nii]"], "no such file"),
        (["--data.scans", "[]"], "data.scans must name at least one scan"),
        (["--data.depth", "0"], "data.depth must be positive"),
        (["--data.depth", "10"], "depth must be 1 + a multiple of 8"),
        (["--data.batch_size", "0"], "data.batch_size must be positive"),
        (["--data.batch_size", "100000000"], "a training batch"),
        (["--data.crop_size", "12"], "crop_size"),
        (["--data.spacing", "[-1, 1, 1]"], "spacing must be three positive numbers"),
        (["--trainer.max_steps", "0"], "max_steps must be positive"),
        (["--trainer.accumulate_grad_batches", "2"], "accumulate_grad_batches must be 1"),
        (["--trainer.precision", "16-mixed"], "bf16-mixed"),
        (["--trainer.resume", "last"], "needs a checkpoint_dir"),
        (["--optimizer.lr", "-1"], "lr must be positive"),
        (["--task.disc_frames", "17"], "shorter than the discriminator's 17"),
        (["--task.lecam_decay", "1.5"], "lecam_decay"),
        (["--task.g_weight", "nan"], "g_weight"),
        (["--task.stage", "4"], "stage"),
        (["--model", "nope"], "unknown model"),
        (["--model", "mamba-tiny"], "not a BTB3D"),
        (["--model", "scan.nii.gz"], "cannot read"),
        (["--task.perceptual_weights", "vgg16.pth"], "not found: vgg16.pth"),
    ],
)
def test_train3d_bad_arguments_exit_2_and_create_nothing(tmp_path, capfd, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = train3d_argv(tmp_path, tmp_path / "model", 1)
    assert main(argv + extra) == 2
    err = capfd.readouterr().err  # Lightning's log lines go to the process's stderr
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_train3d_outputs_never_replace_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scan = write_scan(tmp_path / "scan.nii.gz")
    (tmp_path / "taken").write_text("keep me")
    for output, message in ((tmp_path / "taken", "already exists"), (scan, "would overwrite the input")):
        argv = train3d_argv(tmp_path, output, 1)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert (tmp_path / "taken").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz", "taken"]


def test_a_gpu_accelerator_on_a_machine_without_one(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for accelerator in ("cuda", "gpu"):
        assert main([*train3d_argv(tmp_path, tmp_path / "model", 1), "--trainer.accelerator", accelerator]) == 2
        err = capfd.readouterr().err
        assert err.startswith("vision: error: --trainer: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]
