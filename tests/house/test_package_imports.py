"""The house rules of issue 21, read from the source of the whole package: no module imports an underscore name or
a private module of *another* package of adaptlr (within a package, its modules share their private names), and no
import runs in a circle (function-level and type-only imports counted)."""

import ast
from pathlib import Path

import adaptlr

ROOT = Path(adaptlr.__file__).resolve().parent
SHARED = {"adaptlr._validation"}  # the one validation module, meant for every layer (docs/CONTRACTS.md)


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken) for every import in the file, relative ones resolved."""
    me = _name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rsplit(".", 1)[0]
            module = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            out.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_no_module_takes_another_packages_private_names():
    taken = []
    for path in sorted(ROOT.rglob("*.py")):
        me = _name(path)
        for module, names in _imports(path):
            if not module.startswith("adaptlr.") or module in SHARED or _package(module) == _package(me):
                continue
            private = [p for p in module.split(".")[1:] if p.startswith("_")]
            taken += [f"{me} <- {module}"] if private else []
            taken += [f"{me} <- {module}.{n}" for n in names if n.startswith("_")]
    assert not taken, taken


def test_no_import_cycle_in_the_package():
    modules = {_name(p): p for p in ROOT.rglob("*.py")}
    edges = {m: set() for m in modules}
    for m, path in modules.items():
        for module, names in _imports(path):
            for target in [f"{module}.{n}" for n in names] + [module]:
                if target in modules and target != m:
                    edges[m].add(target)
                    break
    seen, stack, cycles = set(), [], []

    def visit(m: str) -> None:
        stack.append(m)
        for n in edges[m]:
            if n in stack:
                cycles.append(stack[stack.index(n) :] + [n])
            elif n not in seen:
                visit(n)
        stack.pop()
        seen.add(m)

    for m in sorted(modules):
        if m not in seen:
            visit(m)
    assert not cycles, cycles
