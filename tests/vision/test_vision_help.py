"""``vision --help`` stays quick: the commands import their heavy libraries only when they run."""

import subprocess
import sys

HEAVY = ("timm", "lightning", "pytorch_lightning", "torchaudio", "matplotlib", "nibabel", "sklearn", "torchvision")


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from longseq.vision.cli import main\n"
        "assert main(['--help']) == 0\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "train-classifier" in done.stdout and "tokenize3d" in done.stdout
