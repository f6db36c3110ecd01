"""Code hashes for the workflow: which ``kdaug`` source a rule's script runs, as a rule
``param`` (Snakemake cannot see imported code).

Kept apart from :mod:`kdaug.provenance`, which training imports: a change to how code is
hashed must not count as a change to the training code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import kdaug

PACKAGE_DIR = Path(kdaug.__file__).parent


def source_hash(modules: Iterable[str]) -> str:
    """sha256 over what the named ``kdaug`` modules or subpackages *do*.

    ``"engine"`` means ``kdaug/engine.py``; ``"models"`` every ``.py`` (and ``.yaml``
    data file, such as the papers' values) under ``kdaug/models/``. The workflow passes
    this as a rule ``param`` so that Snakemake reruns a rule when the library code it
    imports changes (it cannot see imports).

    A module counts by its syntax tree without comments, docstrings and import statements
    (:func:`code_digest`), and the digests are combined in sorted order without the
    modules' names: moving a module to another package, rewording a comment or a
    docstring, or re-pointing its imports reruns nothing; any change to what runs does.
    (Which modules are reached is still decided by the imports: :func:`module_closure`.)
    """
    digests = []
    for module in sorted(set(modules)):
        path = PACKAGE_DIR / module.replace(".", "/")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in {".py", ".yaml"})
        else:
            files = [path.with_suffix(".py")]
        if not files or not files[0].exists():
            raise FileNotFoundError(f"no kdaug module {module!r} under {PACKAGE_DIR}")
        digests += [code_digest(file) for file in files]
    digest = hashlib.sha256()
    for part in sorted(set(digests)):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def code_digest(path: Path) -> str:
    """sha256 of a ``.py`` file's syntax tree less docstrings and imports, or of a data
    file's bytes."""
    if path.suffix != ".py":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return _tree_digest(path.read_text())


# Every rule's param hashes the closure of its script, and the closures overlap: parsing
# each module once per Snakemake start instead of once per rule took the Snakefile's
# parse from 12 s to ~2 s (`snakemake -n` on the demo, 2 cores). Keyed by the source text,
# so an edited file is parsed again.
@functools.lru_cache(maxsize=1024)
def _tree_digest(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        node.body = [
            child
            for i, child in enumerate(body)
            if not isinstance(child, ast.Import | ast.ImportFrom)
            and not (i == 0 and _is_docstring(child))
        ]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


# Package data a module reads at run time (not visible as an import): module -> folder.
DATA_READ_BY = {"report.tables": "papers"}
_DYNAMIC_NAME = re.compile(r"kdaug(\.[A-Za-z_]\w*)+")


def _module_file(name: str) -> Path | None:
    """``plan`` -> kdaug/plan.py, ``models`` -> kdaug/models/__init__.py, else None."""
    path = PACKAGE_DIR / name.replace(".", "/")
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def kdaug_imports(path: str | Path, package: str = "") -> set[str]:
    """The ``kdaug`` modules a Python file imports, anywhere in it (function-local imports
    too), relative imports resolved within ``package``; also ``"kdaug.x"`` string
    constants, the names of modules imported dynamically (``importlib.import_module``)."""
    names = _kdaug_imports(Path(path).read_text(), package)
    return {n for n in names if _module_file(n) is not None}


@functools.lru_cache(maxsize=1024)
def _kdaug_imports(source: str, package: str) -> frozenset[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(["kdaug", *[p for p in parent if p], *filter(None, [base])])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
        elif isinstance(node, ast.Constant) and _DYNAMIC_NAME.fullmatch(str(node.value)):
            found.add(node.value)
    return frozenset(n.removeprefix("kdaug.") for n in found if n.startswith("kdaug."))


def module_closure(roots: Iterable[str]) -> set[str]:
    """Every ``kdaug`` module reachable from ``roots`` by imports, parent packages included."""
    todo, seen = list(roots), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        file = _module_file(name)
        package = name if file and file.name == "__init__.py" else ".".join(parts[:-1])
        todo += sorted(kdaug_imports(file, package)) if file else []
    return seen


def code_hash(script: str | Path) -> str:
    """sha256 over the ``kdaug`` source a workflow script runs: every module it reaches by
    imports (:func:`module_closure`), the package's ``__init__`` and the data files those
    modules read (:data:`DATA_READ_BY`). A rule passes this as a ``param``: Snakemake cannot
    see imported code, and a hand-kept module list goes stale when an import is added."""
    modules = module_closure(kdaug_imports(script))
    data = [DATA_READ_BY[m] for m in modules if m in DATA_READ_BY]
    return source_hash(sorted(modules | set(data)))
