"""One installed package, `longseq`, whose subpackages are the repository's folders; nothing else is installed."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["core", "kernels", "genomics", "speech", "vision", "bytes"]


def _python(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter outside the repository (so the checkout is not on sys.path)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True).stdout


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_resolves_here_and_the_bare_name_does_not(name, tmp_path):
    code = (
        f"import importlib.util as u, longseq.{name} as m; s = u.find_spec({name!r}); print(m.__file__, s and s.origin)"
    )
    ours, bare = _python(code, tmp_path).split()
    assert Path(ours).resolve().is_relative_to(ROOT / name), ours
    # `bytes` is a builtin type, never a module; `kernels` is Hugging Face's package: never ours
    assert bare == "None" or not Path(bare).resolve().is_relative_to(ROOT / name), f"`import {name}` is {bare}"


def test_import_kernels_does_not_import_triton(tmp_path):
    assert _python("import sys, longseq.kernels; print('triton' in sys.modules)", tmp_path).strip() == "False"


def test_hugging_face_kernels_installs_beside_ours(tmp_path):
    """Hugging Face's `kernels` (a dev dependency) and `longseq.kernels` import side by side."""
    out = _python(
        "import kernels, longseq.kernels as ours; print(kernels.get_kernel.__module__, ours.__name__)", tmp_path
    )
    theirs, ours = out.split()
    assert theirs.split(".")[0] == "kernels" and ours == "longseq.kernels", out


def test_the_wheel_holds_only_longseq_with_every_package_folder(tmp_path):
    """pyproject's explicit package list names every folder with an __init__.py, and nothing else ships."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    # setuptools builds under ./build unless told otherwise: keep the checkout clean
    build_base = ["-C--build-option=build", f"-C--build-option=--build-base={tmp_path / 'build'}"]
    subprocess.run([*command, *build_base, str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("longseq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names} == {"longseq", wheel.name.split("-py3")[0] + ".dist-info"}
    packages = {
        f"longseq/{init.relative_to(ROOT)}" for name in SUBPACKAGES for init in (ROOT / name).rglob("__init__.py")
    }
    assert packages | {"longseq/__init__.py", "longseq/speech/data/alice.txt"} <= names
    assert not any("tests/" in name or "examples/" in name or name.endswith(".pyc") for name in names)
