"""Per-rule-family conda environments (workflow/envs/*.yaml): every rule names one, every line of one is in
environment.yml with the same version, and the packages a family's scripts load when their imports run (in a
fresh interpreter) are all in its env."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest
import yaml
from workflow_helpers import REPO

ENVS = REPO / "workflow" / "envs"
SRC = REPO / "src"
#: conda package -> the module name it provides
MODULE_OF = {"pytorch": "torch", "pyyaml": "yaml", "pillow": "PIL", "scikit-learn": "sklearn"}
#: rule family (its env file) -> the workflow scripts its rules run
FAMILIES = {
    "data": ["prepare_dataset", "extract_features", "make_noisy_labels"],
    "train": ["train"],
    "evaluate": ["evaluate"],
    "report": ["report_table", "report_paper", "report_figures", "report_robustness", "report_protocol_audit"],
}


def _deps(path):
    return [d for d in yaml.safe_load(path.read_text())["dependencies"] if isinstance(d, str)]


def _package(dep: str) -> str:
    return re.split(r"[<>=! ]", dep, maxsplit=1)[0]


def loaded_packages(script: str) -> set[str]:
    """Modules of environment.yml's packages that running a script's top-level imports loads (in a fresh
    interpreter: what the job needs on its normal path; optional backends imported lazily are not counted)."""
    tree = ast.parse((REPO / "workflow" / "scripts" / f"{script}.py").read_text())
    lines = [ast.unparse(n) for n in tree.body
             if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and n.module != "__future__")]
    code = "\n".join([f"import sys; sys.path.insert(0, {str(SRC)!r})", *lines, "print(' '.join(sys.modules))"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    known = {MODULE_OF.get(_package(d), _package(d)) for d in _deps(REPO / "environment.yml")}
    return {m.split(".")[0] for m in proc.stdout.split()} & known


def test_every_rule_names_an_env_of_its_family():
    used = set()
    for rules in sorted((REPO / "rules").glob("*.smk")):
        for env in re.findall(r'"\.\./workflow/envs/([\w-]+)\.yaml"', rules.read_text()):
            assert (ENVS / f"{env}.yaml").exists(), f"{rules.name}: workflow/envs/{env}.yaml does not exist"
            used.add(env)
    assert used == set(FAMILIES) == {p.stem for p in ENVS.glob("*.yaml")}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_env_lines_are_in_environment_yml(family):
    wanted = set(_deps(REPO / "environment.yml"))
    stray = [d for d in _deps(ENVS / f"{family}.yaml") if d not in wanted]
    assert not stray, f"workflow/envs/{family}.yaml: {stray} differ from environment.yml"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_imports_fit_its_env(family):
    provided = {MODULE_OF.get(_package(d), _package(d)) for d in _deps(ENVS / f"{family}.yaml")}
    for script in FAMILIES[family]:
        missing = loaded_packages(script) - provided
        assert not missing, f"workflow/scripts/{script}.py imports {sorted(missing)}, not in envs/{family}.yaml"


def test_evaluation_and_report_envs_have_no_torch():
    """The point of the split: the 1-per-run evaluate jobs and the report jobs never need torch."""
    for family in ("evaluate", "report"):
        assert "pytorch>=2.1" not in _deps(ENVS / f"{family}.yaml")
        for script in FAMILIES[family]:
            assert "torch" not in loaded_packages(script), script
