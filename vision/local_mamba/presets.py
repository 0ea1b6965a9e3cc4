"""LocalMamba presets: the released architectures with their searched per-layer scan directions (as data),
the search supernets, and tiny presets for tests. Also where timm's ``pretrained=True`` looks for the released files.

The directions are the lists hard-coded in hunto/LocalMamba's model functions (``local_vim.py``,
``local_vmamba.py``), found by the supernet search and pasted in by hand; the checkpoints do not store them.
Upstream quirk: ``local_vim_small`` is defined twice in ``local_vim.py`` and the second definition (un-searched
``('h', 'h_flip', 'w2', 'w2_flip')`` in every layer) overwrites the first; no LocalVim-S checkpoint was released
(the README links LocalVMamba-S's file). We use the searched lists, as the paper describes LocalVim-S.
"""

from __future__ import annotations

import os
from pathlib import Path

from longseq.vision.local_mamba.local_vim import LocalVimConfig
from longseq.vision.local_mamba.local_vmamba import LocalVMambaConfig

LOCAL_VIM_TINY_DIRECTIONS: list[list[str]] = [
    ["h", "v_flip", "w7", "w7_flip"],
    ["h_flip", "w2_flip", "w7", "w7_flip"],
    ["h", "h_flip", "v", "w7"],
    ["h", "h_flip", "v", "v_flip"],
    ["h", "h_flip", "v", "v_flip"],
    ["h", "h_flip", "v", "v_flip"],
    ["h_flip", "v", "v_flip", "w7"],
    ["h_flip", "v", "v_flip", "w2_flip"],
    ["h", "h_flip", "v", "v_flip"],
    ["h", "h_flip", "v", "v_flip"],
    ["h", "v", "v_flip", "w2"],
    ["h", "v", "v_flip", "w2_flip"],
    ["h", "h_flip", "v_flip", "w7"],
    ["h_flip", "v", "v_flip", "w2"],
    ["h", "h_flip", "v", "v_flip"],
    ["h", "v", "w2", "w2_flip"],
    ["v", "v_flip", "w2", "w7"],
    ["h", "h_flip", "v", "w2"],
    ["h", "h_flip", "w2_flip", "w7"],
    ["v", "v_flip", "w2", "w2_flip"],
]

LOCAL_VMAMBA_TINY_DIRECTIONS: list[list[str]] = [
    ["h", "h_flip", "w7", "w7_flip"],
    ["h_flip", "v_flip", "w2", "w2_flip"],
    ["h_flip", "v_flip", "w2_flip", "w7"],
    ["h_flip", "v", "v_flip", "w2"],
    ["h", "h_flip", "v_flip", "w2_flip"],
    ["h_flip", "v_flip", "w2", "w2_flip"],
    ["h", "w2_flip", "w7", "w7_flip"],
    ["h", "h_flip", "v", "v_flip"],
    ["h", "v_flip", "w7", "w7_flip"],
    ["h_flip", "v", "w2", "w7_flip"],
    ["v", "v_flip", "w2", "w7_flip"],
    ["h", "h_flip", "v_flip", "w2_flip"],
    ["v_flip", "w2_flip", "w7", "w7_flip"],
    ["h_flip", "v_flip", "w2_flip", "w7_flip"],
    ["h_flip", "v", "w7", "w7_flip"],
]

LOCAL_VMAMBA_SMALL_DIRECTIONS: list[list[str]] = [
    ["h", "v", "v_flip", "w7_flip"],
    ["h", "h_flip", "v", "w7"],
    ["h_flip", "v", "v_flip", "w7"],
    ["h_flip", "v", "w2_flip", "w7"],
    ["h_flip", "v", "w2_flip", "w7"],
    ["h_flip", "v_flip", "w2", "w7_flip"],
    ["h_flip", "v", "v_flip", "w7"],
    ["h", "v", "v_flip", "w7"],
    ["h", "v", "v_flip", "w7"],
    ["h", "v", "v_flip", "w7_flip"],
    ["h", "h_flip", "v", "v_flip"],
    ["h", "v", "v_flip", "w2"],
    ["v", "v_flip", "w2_flip", "w7"],
    ["h", "h_flip", "v", "w2"],
    ["h_flip", "v", "v_flip", "w7_flip"],
    ["h", "h_flip", "v", "v_flip"],
    ["h", "v", "v_flip", "w7_flip"],
    ["h", "v", "v_flip", "w7_flip"],
    ["h", "h_flip", "v_flip", "w7"],
    ["h_flip", "v_flip", "w2_flip", "w7"],
    ["h_flip", "v", "v_flip", "w7_flip"],
    ["v", "v_flip", "w7", "w7_flip"],
    ["h", "v", "v_flip", "w7_flip"],
    ["h_flip", "v", "v_flip", "w2"],
    ["h", "v", "v_flip", "w2_flip"],
    ["h", "h_flip", "v", "w7"],
    ["h", "h_flip", "w7", "w7_flip"],
    ["h", "v_flip", "w2", "w2_flip"],
    ["h", "v_flip", "w2", "w7"],
    ["h", "v", "v_flip", "w7_flip"],
    ["h_flip", "v", "w2_flip", "w7"],
    ["h_flip", "v_flip", "w7", "w7_flip"],
    ["h", "v", "w7", "w7_flip"],
]

PRESETS: dict[str, LocalVimConfig | LocalVMambaConfig] = {
    # LocalVim-T: RoPE + mean pool (local_vim_tiny.ckpt, 76.2 top-1)
    "localvim_tiny": LocalVimConfig(embed_dim=192, depth=20, directions=LOCAL_VIM_TINY_DIRECTIONS),
    # LocalVim-T with a middle class token, no RoPE (local_vim_tiny_middle_cls_token.ckpt, 77.8)
    "localvim_tiny_middle_cls_token": LocalVimConfig(
        embed_dim=192, depth=20, directions=LOCAL_VIM_TINY_DIRECTIONS, cls_token="middle", rope=False
    ),
    "localvim_small": LocalVimConfig(embed_dim=384, depth=20, directions=LOCAL_VIM_TINY_DIRECTIONS),
    "localvim_tiny_search": LocalVimConfig(embed_dim=128, depth=20, directions=None),
    "localvmamba_tiny": LocalVMambaConfig(depths=[2, 2, 9, 2], directions=LOCAL_VMAMBA_TINY_DIRECTIONS),
    "localvmamba_small": LocalVMambaConfig(depths=[2, 2, 27, 2], directions=LOCAL_VMAMBA_SMALL_DIRECTIONS),
    "localvmamba_tiny_search": LocalVMambaConfig(
        dims=[32, 64, 128, 256], depths=[2, 2, 9, 2], directions=None, drop_path_rate=0.1
    ),
    "localvmamba_small_search": LocalVMambaConfig(
        dims=[32, 64, 128, 256], depths=[2, 2, 27, 2], directions=None, drop_path_rate=0.1
    ),
    # small models for Fashion-MNIST on a CPU (28x28 grey, 7x7 patches): the middle-class-token recipe with
    # LocalMamba's un-searched local directions (``local_vim_tiny_wo_search``), and its search supernet
    "localvim_fmnist": LocalVimConfig(
        img_size=28,
        patch_size=4,
        in_chans=1,
        num_classes=10,
        embed_dim=64,
        depth=4,
        d_state=8,
        directions=[["h", "h_flip", "w2", "w2_flip"]] * 4,
        cls_token="middle",
        rope=False,
    ),
    "localvim_fmnist_search": LocalVimConfig(
        img_size=28,
        patch_size=4,
        in_chans=1,
        num_classes=10,
        embed_dim=64,
        depth=4,
        d_state=8,
        directions=None,
        cls_token="middle",
        rope=False,
    ),
    # tiny presets for tests: 32x32 images, every direction used somewhere
    "localvim_test": LocalVimConfig(
        img_size=32,
        patch_size=8,
        num_classes=10,
        embed_dim=32,
        depth=2,
        d_state=4,
        directions=[["h", "v_flip", "w2", "w7_flip"], ["h_flip", "v", "w2_flip", "w7"]],
    ),
    "localvim_test_search": LocalVimConfig(img_size=32, patch_size=8, num_classes=10, embed_dim=32, depth=2, d_state=4),
    "localvmamba_test": LocalVMambaConfig(
        num_classes=10,
        dims=[16, 32],
        depths=[1, 1],
        d_state=4,
        directions=[["h", "v_flip", "w2", "w7_flip"], ["h_flip", "v", "w2_flip", "w7"]],
    ),
    "localvmamba_test_search": LocalVMambaConfig(num_classes=10, dims=[16, 32], depths=[1, 1], d_state=4),
}

# The released files of hunto/LocalMamba v1.0.0, by preset.
RELEASE_FILES: dict[str, str] = {
    "localvim_tiny": "local_vim_tiny.ckpt",
    "localvim_tiny_middle_cls_token": "local_vim_tiny_middle_cls_token.ckpt",
    "localvmamba_small": "local_vssm_small.ckpt",
}
RELEASE_URL = "https://github.com/hunto/LocalMamba/releases/download/v1.0.0/"


def weights_dir() -> Path:
    """Where official weight files are looked for: ``$LONGSEQ_WEIGHTS`` or ``~/.cache/longseq/weights``."""
    return Path(os.environ.get("LONGSEQ_WEIGHTS", "~/.cache/longseq/weights")).expanduser()
