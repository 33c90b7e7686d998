"""The layout's rules, read from the source: no import cycle (function-local imports count; `TYPE_CHECKING` ones
do not), the config knows no method, methods know no engine, and no class or function grows past a screen."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = {"bert_tickets": ROOT / "bert_tickets", "bert_tickets.tasks": ROOT / "tasks"}  # tasks/ installs inside
ENGINE = {f"bert_tickets.engine.{name}" for name in ("run", "run_folder", "resources", "training")}  # the run itself
MAX_CLASS_LINES, MAX_FUNCTION_LINES = 150, 60


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that `name` imports anywhere in its code (`from pkg import module` counts as the
    module), less the imports under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in
                   ast.unparse(node.test) for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *base.split(".")])
            targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_cycle_and_function_local_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = graph()
    assert "bert_tickets.studies.plan" in edges["bert_tickets.api"]  # imported inside a function only
    assert "bert_tickets.tasks" in edges["bert_tickets.config"]


def test_no_import_cycle_among_the_project_modules():
    assert cycles(graph()) == []


def test_the_config_imports_no_method_and_no_method_imports_the_engine():
    edges = graph()
    assert not {m for m in edges["bert_tickets.config"] if m.startswith("bert_tickets.methods")}
    for name, imported in edges.items():
        if name.startswith("bert_tickets.methods"):
            assert not imported & ENGINE, name


def test_no_class_over_150_lines_and_no_function_over_60():
    too_long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES if isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef) else None
            if limit is not None and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []
