"""The layering of DESIGN.md: each layer imports only the layers below it (`spikeforge.isa`
nothing of the project; `mapping` isa; `compiler` isa and mapping; `hwsim` isa), and nothing
imports the old top-level names."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"isa": {"isa"}, "mapping": {"isa", "mapping"}, "compiler": {"isa", "mapping", "compiler"},
           "hwsim": {"isa", "hwsim"}}
LAYERS = set(ALLOWED) | {"sweep"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return mods | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files
    for f in files:
        for m in _imports(f):
            parts = m.split(".")
            assert parts[0] not in LAYERS, f"{f.relative_to(ROOT)} imports {m} (use spikeforge.{m})"
            if parts[0] == "spikeforge":
                assert len(parts) > 1 and parts[1] in ALLOWED[layer], f"{f.relative_to(ROOT)} imports {m}"


def test_nothing_imports_the_layers_by_their_folder_names():
    for f in sorted(ROOT.glob("*/**/*.py")):
        if ".venv" in f.parts:
            continue
        bad = {m for m in _imports(f) if m.split(".")[0] in LAYERS}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
