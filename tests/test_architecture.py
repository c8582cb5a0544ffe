"""The tree shows the architecture: runner/ and models/ never import a paradigm, and no
paradigm package imports another (read from every module's imports, not from a list)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "paradigms"
SHARED = ("runner", "models")
PARADIGMS = sorted(
    p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file() and p.name not in SHARED
)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def paradigms_imported(path: Path) -> set[str]:
    return {
        m.split(".")[1]
        for m in imports(path)
        if m.split(".")[:2][-1] in PARADIGMS and m.startswith("paradigms.")
    }


def test_there_are_paradigm_packages_and_shared_ones() -> None:
    assert {"finetune", "federated", "multitask", "transfer", "distill", "scratch"} <= set(
        PARADIGMS
    )
    assert all((PACKAGE / name).is_dir() for name in SHARED)
    assert paradigms_imported(PACKAGE / "finetune" / "paradigm.py") == {"finetune"}


def test_runner_models_and_the_contract_import_no_paradigm() -> None:
    modules = [PACKAGE / "contract.py", *(p for s in SHARED for p in (PACKAGE / s).rglob("*.py"))]
    wrong = {str(p.relative_to(ROOT)): paradigms_imported(p) for p in modules}
    assert not {k: v for k, v in wrong.items() if v}


def test_no_paradigm_package_imports_another() -> None:
    wrong = {}
    for name in PARADIGMS:
        for path in (PACKAGE / name).rglob("*.py"):
            others = paradigms_imported(path) - {name}
            if others:
                wrong[str(path.relative_to(ROOT))] = others
    assert not wrong
