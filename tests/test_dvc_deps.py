"""dvc.yaml's code deps are exactly the code each stage runs, so `dvc repro` reruns what a change affects.

A stage runs `python stages/<name>.py`; that script imports `common` (stages/common.py) and modules of
the `wae` package, which import others in turn. Every project file reached that way must be a dep of
the stage (else editing it reruns nothing and DVC calls stale results up to date), and no other code
file may be (else an unrelated edit reruns the stage). Imports made only for type checkers
(`if TYPE_CHECKING:`) do not run, so they do not count; a registry that imports its modules by name
(`importlib.import_module`) may run any module of its package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from project import REPO, sh

STAGES = REPO / "stages"
PACKAGE = REPO / "src"


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run: those under `if TYPE_CHECKING:` are skipped."""
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _module_file(name: str) -> Path | None:
    """The project file of a module name (`common`, `wae`, `wae.models`), or None if not ours."""
    if name == "common":
        return STAGES / "common.py"
    if name != "wae" and not name.startswith("wae."):
        return None
    base = PACKAGE.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative import inside the package
        package = ".".join(path.relative_to(PACKAGE).with_suffix("").parts[: -node.level])
        module = f"{package}.{node.module}" if node.module else package
    else:
        module = node.module or ""
    # `from wae import tracking` imports the module wae.tracking as well as the package.
    return [module] + [f"{module}.{alias.name}" for alias in node.names]


def _lazy_loaders(tree: ast.AST, path: Path) -> dict[str, list[Path]]:
    """Functions of a registry that import its modules by name (`importlib.import_module`), mapped to
    the modules they may import: the other modules of the registry's package."""
    loaders = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and "importlib.import_module(" in ast.unparse(node):
            loaders[node.name] = sorted(p for p in path.parent.glob("*.py") if p != path)
    return loaders


def code_run_by(script: Path) -> set[Path]:
    """The script and every project file it imports, transitively (parent packages included). A module
    a registry imports by name (wae.regularisers, wae.architectures) counts where the registry's loader
    is called: validating a name against a registry runs none of them, building a model may run any."""
    seen: set[Path] = set()
    loaders: dict[str, list[Path]] = {}
    todo = [script]
    while todo:
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            tree = ast.parse(path.read_text(), str(path))
            loaders.update(_lazy_loaders(tree, path))
            for node in _runtime_imports(tree):
                for module in _imported_modules(node, path):
                    parts = module.split(".")
                    for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
                        found = _module_file(".".join(parts[:depth]))
                        if found is not None:
                            todo.append(found)
        for name, modules in loaders.items():
            called = any(re.search(rf"(?<!def )(?<![\w.]){name}\(", f.read_text()) for f in seen)
            if called:
                todo += [m for m in modules if m not in seen]
    return seen


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _code_deps(stage: dict) -> set[Path]:
    deps = [d for d in stage["deps"] if not d.startswith("${")]
    files: set[Path] = set()
    for dep in deps:
        path = REPO / dep
        files |= set(path.rglob("*.py")) if path.is_dir() else {path}
    return {f for f in files if f.suffix == ".py"}


@pytest.mark.parametrize("name", list(_stages()))
def test_each_stage_depends_on_exactly_the_code_it_runs(name):
    stage = _stages()[name]
    script = REPO / stage["cmd"].split()[1]
    assert script.parent == STAGES, f"stage {name} should run a script in stages/: {stage['cmd']}"
    needed, declared = code_run_by(script), _code_deps(stage)
    rel = lambda paths: sorted(str(p.relative_to(REPO)) for p in paths)  # noqa: E731
    assert not needed - declared, f"dvc.yaml stage {name} lacks deps it runs: {rel(needed - declared)}"
    assert not declared - needed, f"dvc.yaml stage {name} has deps it never runs: {rel(declared - needed)}"


def test_the_import_walk_finds_modules_imported_inside_functions_and_skips_type_only_ones():
    # metrics imports wae.regularisers.mmd inside a function, and wae.data only for types.
    reached = {str(p.relative_to(REPO)) for p in code_run_by(REPO / "src/wae/metrics.py")}
    assert "src/wae/regularisers/mmd.py" in reached
    assert "src/wae/data.py" not in reached


def test_dvc_commands_send_no_usage_report_and_leave_nothing_in_the_temp_folder(never_run_project, tmp_path):
    # DVC's usage analytics are off in the project's .dvc/config: each command would otherwise write
    # a report into the temp folder for a background sender, which stays there when offline.
    root, env = never_run_project
    temp = tmp_path / "temp"
    temp.mkdir()
    sh(["dvc", "status"], root, {**env, "TMPDIR": str(temp)})
    assert list(temp.iterdir()) == []
