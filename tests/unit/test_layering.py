"""The sans-IO rule, enforced: the stack's core imports no I/O, clock or randomness.

docs/ARCHITECTURE.md: nothing under netvisor/tcpip/ imports trio, socket,
time, random, os, select or netvisor.link (imports under ``if TYPE_CHECKING:``
are allowed: they never run). Checked on the source so that a lazy import
inside a function is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "netvisor" / "tcpip"
FORBIDDEN = {"trio", "socket", "time", "random", "os", "select", "threading",
             "asyncio", "subprocess", "netvisor.link", "netvisor.netstack", "netvisor.syscall"}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if line not in skip]


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_is_sans_io(path: Path) -> None:
    bad = [f"line {line}: import {name}" for line, name in _imports(path) if _forbidden(name)]
    assert not bad, f"{path.relative_to(CORE.parent.parent)} breaks the sans-IO rule: {bad}"


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trio\n")
    assert [name for _, name in _imports(probe) if _forbidden(name)] == ["os"]
