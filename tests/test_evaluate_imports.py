"""The evaluate job's module path stays free of torch (issue 13: 2.5 s of import per evaluation job)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cmhash.store import task_names

SRC = Path(__file__).resolve().parents[1] / "src"


def test_evaluation_modules_do_not_import_torch():
    code = (f"import sys; sys.path.insert(0, {str(SRC)!r}); import cmhash.evaluate, cmhash.logsetup; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_task_names_by_hand():
    assert task_names(("image", "text")) == ["I2T", "T2I"]
    assert task_names(["pix", "fou"]) == ["P2F", "F2P"]
    with pytest.raises(ValueError, match="two modality names"):
        task_names(["image"])
