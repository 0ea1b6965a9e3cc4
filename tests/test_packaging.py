"""One installed package, `longseq`, whose subpackages are the repository's folders; nothing else is installed."""

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["core", "kernels", "genomics", "speech", "vision", "bytes"]


def _python(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter outside the repository (so the checkout is not on sys.path)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True).stdout


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_resolves_here_and_the_bare_name_does_not(name, tmp_path):
    out = _python(
        f"import importlib.util, longseq.{name} as m; print(m.__file__); print(importlib.util.find_spec({name!r}))",
        tmp_path,
    )
    path, bare = out.split("\n")[:2]
    assert Path(path).resolve().is_relative_to(ROOT / name), path
    if name != "bytes":  # `bytes` is a builtin type, never a module
        assert bare == "None", f"`import {name}` resolves to {bare}"


def test_packages_list_every_folder():
    """pyproject's explicit package list names every folder with an __init__.py (the wheel holds only longseq/)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"longseq"} | {
        "longseq." + ".".join(init.parent.relative_to(ROOT).parts)
        for name in SUBPACKAGES
        for init in (ROOT / name).rglob("__init__.py")
    }
    assert listed == found


def test_import_kernels_does_not_import_triton(tmp_path):
    assert _python("import sys, longseq.kernels; print('triton' in sys.modules)", tmp_path).strip() == "False"
