"""The import packages resolve to this repository (PyPI has unrelated `kernels`, `bytes`, `speech`, `vision`)."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["core", "kernels", "genomics", "speech", "vision", "bytes"])
def test_package_resolves_here(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(ROOT), module.__file__


def test_import_kernels_does_not_import_triton():
    import subprocess
    import sys

    code = "import sys, kernels; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
