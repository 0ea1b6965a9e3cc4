"""The Japanese cases of tests/fixtures/vallex_text_a in an environment where pyopenjtalk runs but torch need not
be installed (pyopenjtalk-prebuilt 0.3.0 needs numpy < 2, the project numpy 2.3).

Loads ``speech/text/japanese.py`` by path beside a stub of ``longseq.core.io`` and compares each Japanese case's
phonemes (``japanese_to_ipa``, the cleaner's final ``.``, spaces as ``_``) with the fixture's:

    python -m venv /tmp/ja && /tmp/ja/bin/pip install numpy==1.26.4 pyopenjtalk-prebuilt==0.3.0 Unidecode==1.4.0
    apt install open-jtalk-mecab-naist-jdic
    OPEN_JTALK_DICT_DIR=/var/lib/mecab/dic/open-jtalk/naist-jdic /tmp/ja/bin/python benchmarks/speech_vallex_japanese.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def japanese_module():
    io = types.ModuleType("longseq.core.io")
    io.InputError = type("InputError", (Exception,), {})
    sys.modules.update({"longseq": types.ModuleType("longseq"), "longseq.core": types.ModuleType("longseq.core")})
    sys.modules["longseq.core.io"] = io
    spec = importlib.util.spec_from_file_location("japanese", ROOT / "speech" / "text" / "japanese.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    japanese = japanese_module()
    cases = json.loads((ROOT / "tests" / "fixtures" / "vallex_text_a" / "cases.json").read_text(encoding="utf-8"))
    failures = 0
    for case in cases:
        if "[JA]" not in case["tokenizer_input"]:
            continue
        phonemes = japanese.japanese_to_ipa(case["input"]).rstrip()
        if phonemes and phonemes[-1] not in ".,!?-…~":
            phonemes += "."
        phonemes = phonemes.replace(" ", "_")
        same = phonemes == case["phonemes"]
        failures += not same
        print(case["id"], "equal" if same else f"differs: {phonemes!r} against {case['phonemes']!r}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
