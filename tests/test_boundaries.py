"""Stage boundaries: a stage imports only repro.common, itself, and the other stages' public API."""

from __future__ import annotations

import ast
from pathlib import Path

from repro import PUBLIC_API

SRC = Path(__file__).resolve().parents[1] / "src" / "repro"


def _imports(path: Path) -> list[str]:
    """Every ``repro.*`` module a file imports (``from repro.x import y`` counts as repro.x.y when y is a module)."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("repro.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("repro"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                out.append(name if (SRC.parent / Path(*name.split("."))).with_suffix(".py").exists() else node.module)
    return out


def test_no_stage_imports_another_stages_internals() -> None:
    stages = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists() and p.name != "common")
    bad = []
    for stage in stages:
        for path in sorted((SRC / stage).rglob("*.py")):
            for mod in _imports(path):
                parts = mod.split(".")
                if len(parts) < 2 or parts[1] in ("common", stage):
                    continue
                if not any(mod == api or mod.startswith(api + ".") for api in PUBLIC_API):
                    bad.append(f"{path.relative_to(SRC.parent)} imports {mod}")
    assert not bad, "cross-stage imports outside repro.PUBLIC_API:\n" + "\n".join(bad)


def test_common_imports_no_stage() -> None:
    bad = [f"{p.name} imports {m}" for p in sorted((SRC / "common").rglob("*.py")) for m in _imports(p)
           if m.split(".")[1] != "common"]
    assert not bad, bad


def test_public_api_modules_exist() -> None:
    for mod in PUBLIC_API:
        assert (SRC.parent / Path(*mod.split("."))).with_suffix(".py").exists(), mod


def test_name_lists_shared_with_the_rules_match_the_code() -> None:
    from repro.detect.config import MODELS
    from repro.detect.models import BUILDERS
    from repro.lars import ARMS
    from repro.lars.study import make_optimizer

    assert set(BUILDERS) == set(MODELS)
    import torch

    params = [torch.nn.Parameter(torch.ones(2))]
    cfg = {"momentum": 0.9, "weight_decay": 0.0, "trust_coefficient": 1e-3, "exclude_bias_and_norm": False}
    for arm in ARMS:  # every arm the rules schedule has an optimizer
        make_optimizer(arm, params, 0.1, {"sgd": cfg, "lars": cfg, "momentum": 0.9, "weight_decay": 0.0})
