"""The package's layout rules (DESIGN.md): the engine never imports plotting or widget libraries
nor the chapters; sibling imports sit at the top of each module; the import graph has no cycle."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import robust_transfer

PACKAGE = Path(robust_transfer.__file__).parent
ENGINE = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__main__.py")
DISPLAY = ("matplotlib", "ipywidgets", "IPython")


def _imports(path: Path):
    """(module imported, resolved sibling name or None, at top level?) for each import."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.module, None, id(node) in top
            elif node.level == 1 and path.parent == PACKAGE:
                names = [node.module] if node.module else [a.name for a in node.names]
                for name in names:
                    yield f".{name}", name.split(".")[0], id(node) in top


#: front ends (the command line) may import display libraries and chapters inside a command that
#: shows something (``compare``'s report), never at the top of the module
FRONT_ENDS = ("cli.py",)


def _display(mod, sib) -> bool:
    return (mod or "").split(".")[0] in DISPLAY or sib == "chapters"


def test_engine_never_imports_display_libraries_or_chapters():
    bad = [(p.name, mod) for p in ENGINE for mod, sib, top in _imports(p)
           if _display(mod, sib) and (top or p.name not in FRONT_ENDS)]
    assert not bad


def test_importing_the_engine_loads_no_display_library():
    names = " ".join(p.stem for p in ENGINE if p.stem != "__init__")
    code = (f"import importlib, sys\nfor m in '{names}'.split(): importlib.import_module('robust_transfer.' + m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DISPLAY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pure_modules_import_nothing_local():
    """images (transforms) and influence (maths) stand alone: no sibling import at all."""
    for name in ("images", "influence"):
        assert not [sib for _, sib, _ in _imports(PACKAGE / f"{name}.py") if sib], name


def test_sibling_imports_are_at_the_top():
    hidden = [(p.name, mod) for p in ENGINE for mod, sib, top in _imports(p)
              if sib and not top and not (p.name in FRONT_ENDS and sib == "chapters")]
    assert not hidden


def test_no_import_cycle():
    graph = {p.stem: {sib for _, sib, _ in _imports(p) if sib} for p in ENGINE}
    state = {}

    def visit(node, path):
        if state.get(node) == "open":
            pytest.fail(f"import cycle: {' -> '.join(path + [node])}")
        if state.get(node) == "done":
            return
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])
