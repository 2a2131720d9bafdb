"""The layers import only downwards (docs/ARCHITECTURE.md).

Parses every module's imports, including those inside functions and under TYPE_CHECKING, and
fails on an import from a higher layer, which is also what would close a cycle between two
layers. The pure core additionally may not import I/O libraries. A new subpackage or
top-level module must be given a layer here, so the test also fails on one it does not know.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "dfsring"

# Lowest first. A module may import from its own layer and any layer before it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("dfsring", "dfsring.foundation")),
    ("core", ("dfsring.core", "dfsring.ring")),
    ("storage", ("dfsring.storage",)),
    ("transport", ("dfsring.transport",)),
    ("replication", ("dfsring.replication", "dfsring.gossip", "dfsring.antientropy")),
    ("files", ("dfsring.files",)),
    ("edges", ("dfsring.http", "dfsring.s3", "dfsring.cli", "dfsring.client")),
    ("node", ("dfsring.node",)),
    ("testing", ("dfsring.testing",)),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
IO_LIBRARIES = {"aiohttp", "lmdb", "socket", "subprocess", "os", "ctypes", "uvloop", "pathlib",
                "shutil", "threading"}


def layer_of(module: str) -> str:
    """The layer owning `module`: the longest prefix listed in LAYERS."""
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    if best is None or (best == "foundation" and module != "dfsring"
                        and not module.startswith("dfsring.foundation")):
        raise LookupError(f"{module} has no layer: give it one in tests/unit/test_layers.py")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file; `from dfsring import x` names x."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module.startswith("dfsring"):
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                          if (ROOT.parent / f"{node.module}.{alias.name}".replace(".", "/")
                              ).with_suffix(".py").exists()
                          or (ROOT.parent / f"{node.module}.{alias.name}".replace(".", "/")
                              ).is_dir()]
    return found


MODULES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_upward_import(path: Path) -> None:
    here = module_name(path)
    mine = RANK[layer_of(here)]
    upward = [f"line {line}: {target} ({layer_of(target)})" for line, target in imports(path)
              if target.startswith("dfsring") and RANK[layer_of(target)] > mine]
    assert not upward, f"{here} ({layer_of(here)}) imports from a higher layer: {upward}"


@pytest.mark.parametrize("path", [p for p in MODULES if layer_of(module_name(p)) == "core"],
                         ids=lambda p: module_name(p))
def test_pure_core_does_no_io(path: Path) -> None:
    io = [f"line {line}: {target}" for line, target in imports(path)
          if target.split(".")[0] in IO_LIBRARIES]
    assert not io, f"{module_name(path)} is in the pure core but imports I/O: {io}"


def test_every_top_level_entry_has_a_layer() -> None:
    """At most about sixteen entries, each a known layer: the folder list shows the layers
    (the S3 edge, dfsring.s3, made the sixteenth)."""
    entries = sorted(p.name for p in ROOT.iterdir()
                     if p.name not in ("__pycache__", "py.typed") and not p.name.endswith(".pyc"))
    for name in entries:
        layer_of("dfsring" if name == "__init__.py" else f"dfsring.{name.removesuffix('.py')}")
    assert len(entries) <= 16, entries


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a core module importing the coordinator is flagged."""
    bad = tmp_path / "bad.py"
    bad.write_text("from dfsring.replication.coordinator import ReplicatedCoordinator\n")
    targets = [t for _, t in imports(bad)]
    assert RANK[layer_of(targets[0])] > RANK["core"]
