"""The house's shape: subpackages by stage, arrows one way, no cycle, lint clean.

Read from the code's own imports (ast, nothing imported), as the README's code map
draws them. A new import that points the wrong way fails here, not in review.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "bertclf"
SHARED = {"errors", "fileio", "processes", "servable", "tflog", "version"}
# Each stage, and the stages it may import (besides itself and the shared modules).
ALLOWED = {
    "config": set(),
    "data": {"config"},
    "model": {"config"},
    "prediction": {"model", "data", "config"},
    "evaluation": {"prediction", "model", "data", "config"},
    "export": {"evaluation", "prediction", "model", "data", "config"},
    "audit": {"evaluation", "model", "data", "config"},
    "training": {"audit", "evaluation", "prediction", "model", "data", "config"},
    "serving": {"config.fields"},  # its own ServeConfig is declared with config's fields
    "cli": {
        "config",
        "data",
        "model",
        "training",
        "audit",
        "evaluation",
        "prediction",
        "export",
        "serving",
    },
}


def modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(p for p in parts if p != "__init__")] = f
    return out


def imports(path: Path) -> set[str]:
    """bertclf modules (or packages) `path` imports, at any depth, as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bertclf"):
            base = node.module.removeprefix("bertclf").lstrip(".")
            found |= {f"{base}.{a.name}".lstrip(".") for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name[8:] for a in node.names if a.name.startswith("bertclf.")}
    return {n for n in found if n}


def stage(name: str) -> str:
    return name.split(".")[0]


def test_at_most_twelve_modules_at_the_top_and_every_stage_says_its_job():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    for package in ALLOWED:
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
        assert doc and "May import" in doc, package


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_stage_imports_only_the_stages_below_it(package):
    known = modules()
    wrong = []
    for name, path in known.items():
        if stage(name) != package or name == package:
            continue
        for target in imports(path):
            while target and target not in known:  # bertclf.data.tables.Row -> data.tables
                target = target.rpartition(".")[0]
            if not target or stage(target) in (package, *SHARED):
                continue
            allowed = ALLOWED[package]
            if stage(target) not in allowed and target not in allowed:
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_the_shared_modules_import_no_stage():
    for name in SHARED:
        targets = {stage(t) for t in imports(PACKAGE / f"{name}.py")}
        assert targets <= SHARED, (name, targets)


def test_no_import_cycle():
    known = modules()
    graph = {}
    for name, path in known.items():
        edges = set()
        for target in imports(path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    # A cycle exists iff a depth-first search meets a node on its own stack.
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*trail, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_server_loads_no_training_setting_and_no_tensorflow():
    code = (
        "import sys, bertclf.serving.server, bertclf.serving.app\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('bertclf.'))\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print(*loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = done.stdout.split()
    assert [m for m in loaded if stage(m.removeprefix("bertclf.")) == "config"] == [
        "bertclf.config",
        "bertclf.config.fields",
    ]


def test_ruff_lint_and_format():
    ruff = Path(sys.executable).with_name("ruff")
    for args in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [str(ruff), *args, "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-3000:]
