"""Backend code lives in keras_l2mgan/trainers/ (issue 17): every backend module defines the same
hooks, and no other library module compares against a backend name.

Both checks read the source (ast), so they import no backend and run in any pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from keras_l2mgan.trainers import BACKENDS, HOOKS

pytestmark = pytest.mark.backend_independent  # reads source files only

PACKAGE = REPO_ROOT / "keras_l2mgan"
# Where naming a backend is the job: the trainers, and export (which picks the TensorFlow
# process). The CLI (which chooses the backend) lives outside the package.
BACKEND_CODE = ("trainers/", "export.py")
# Recording keras.backend.backend() (bundle.py, metrics/classifier.py: metadata) is no branch
# and passes the check; these compare a string that is no backend.
ALLOWED = {
    "importers/torch_zip.py": "module == 'torch' is a pickled class's module, not the backend",
}
# Keras' backend-specific internals: only a trainer module may touch them.
BACKEND_INTERNALS = {"jax_state_sync", "_distribute_strategy"}


def _public_names(path: Path) -> set[str]:
    """Functions, classes and constants a module defines at top level (imports excluded)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_module_defines_exactly_the_hooks(backend):
    names = _public_names(PACKAGE / "trainers" / f"{backend}.py")
    assert names == set(HOOKS), (f"trainers/{backend}.py: missing {set(HOOKS) - names}, "
                                 f"not in HOOKS {names - set(HOOKS)}")


def _backend_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in BACKENDS
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_backend_literal(element) for element in node.elts)
    return False


def _backend_branches(path: Path) -> list[str]:
    """`x == "jax"`, `b in ("torch", ...)`, `.jax_state_sync`, hasattr(m, "jax_state_sync")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and any(
                _backend_literal(side) for side in [node.left, *node.comparators]):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and node.attr in BACKEND_INTERNALS:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and node.value in BACKEND_INTERNALS:
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


def test_no_module_outside_the_trainers_branches_on_the_backend():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(BACKEND_CODE) or relative in ALLOWED:
            continue
        found = _backend_branches(path)
        if found:
            offenders[relative] = found
    assert offenders == {}, ("backend-specific code outside keras_l2mgan/trainers/: move it "
                             f"into a hook there ({', '.join(HOOKS)}): {offenders}")


def test_the_checker_sees_each_kind_of_branch(tmp_path):
    path = tmp_path / "branches.py"
    path.write_text('if keras.backend.backend() == "torch":\n    pass\n'
                    'jit = backend in ("tensorflow", "jax")\n'
                    'model.jax_state_sync()\n'
                    'hasattr(model, "jax_state_sync")\n'
                    'recorded = {"backend": keras.backend.backend()}\n')
    assert sorted(line.split(":")[0] for line in _backend_branches(path)) == \
        ["line 1", "line 3", "line 4", "line 5"]
