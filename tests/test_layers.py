"""Imports point down only: web (``backend``) -> engine (``reminders``) -> data (``reminders.data``),
with the pure core (``reminders.core``) beside and below them all.

Two checks, over every module found by walking the packages (a new module cannot be
forgotten): importing an engine or data-layer module in a fresh interpreter loads no
Flask, Werkzeug or Jinja2; and no ``import`` statement anywhere (inside functions too)
names a module of a layer above its own.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import backend
import reminders

WEB_LIBRARIES = frozenset({"flask", "werkzeug", "jinja2"})
#: What the pure core may import besides itself: the standard library and these.
CORE_THIRD_PARTY = frozenset({"pydantic"})
#: Top-level packages of this repository (the rest is the standard library or third party).
OURS = frozenset({"backend", "reminders", "bench", "tests", "scripts"})
#: Third-party packages that are neither the web nor allowed in the core.
NOT_FOR_THE_CORE = frozenset(
    {"sqlalchemy", "sqlmodel", "twilio", "apscheduler", "requests", "phonenumbers", "psycopg"}
)


def walk(package: object) -> list[str]:
    """Every module of ``package`` (itself included), by walking its directory."""
    name = package.__name__  # type: ignore[attr-defined]
    found = [name]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):  # type: ignore[attr-defined]
        if ".migrations.versions." in info.name:  # Alembic scripts, loaded by Alembic only
            continue
        found.append(info.name)
    return found


def layer(module: str) -> str:
    """The layer of one of our modules: ``core``, ``data``, ``engine`` or ``web``."""
    if module == "reminders.core" or module.startswith("reminders.core."):
        return "core"
    if module == "reminders.data" or module.startswith("reminders.data."):
        return "data"
    if module == "reminders" or module.startswith("reminders."):
        return "engine"
    return "web"


#: Which layers each layer may import (besides third-party code, checked apart).
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "engine": {"core", "data", "engine"},
    "web": {"core", "data", "engine", "web"},
}

ENGINE_AND_DATA = [m for m in walk(reminders) if layer(m) in ("engine", "data")]
EVERY_MODULE = walk(reminders) + walk(backend)


def test_the_walk_finds_every_layer() -> None:
    layers = {layer(m) for m in EVERY_MODULE}
    assert layers == {"core", "data", "engine", "web"}
    assert {"reminders.dispatch", "reminders.data.models", "reminders.data.db"} <= set(
        ENGINE_AND_DATA
    )
    assert "backend.dashboard.web" in EVERY_MODULE


@pytest.mark.parametrize("module", ENGINE_AND_DATA)
def test_engine_and_data_modules_load_no_web_framework(module: str) -> None:
    program = (
        f"import {module}, sys\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(WEB_LIBRARIES)!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} loaded {result.stdout.strip()}"


def module_path(module: str) -> Path:
    """The source file of ``module`` (its ``__init__.py`` for a package)."""
    root = Path(backend.__file__).parent.parent
    base = root.joinpath(*module.split("."))
    # A module file first: ``reminders/core/regimens/`` is a data directory beside regimens.py.
    return base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"


def is_module(name: str) -> bool:
    """True when ``name`` is one of our modules or packages (a file or a directory)."""
    return name.split(".")[0] in OURS and module_path(name).exists()


def imported_names(module: str, source: str, *, is_package: bool) -> list[tuple[int, str]]:
    """Every module named by an import in ``source`` (of ``module``), at any depth, with its line."""
    tree = ast.parse(source, filename=module)
    package = module if is_package else module.rpartition(".")[0]
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from reminders import dispatch`` names the module reminders.dispatch;
                # ``from reminders.outbox import enqueue_message`` names reminders.outbox.
                submodule = f"{target}.{alias.name}"
                names.append((node.lineno, submodule if is_module(submodule) else target))
    return list(dict.fromkeys(names))  # one entry per line and module


def upward_imports(
    module: str, source: str | None = None, *, is_package: bool = False
) -> list[str]:
    """The imports of ``module`` that point at a layer above it, or at a forbidden library.

    ``source`` defaults to the module's file.
    """
    if source is None:
        path = module_path(module)
        source = path.read_text(encoding="utf-8")
        is_package = path.name == "__init__.py"
    own = layer(module)
    wrong = []
    for line, name in imported_names(module, source, is_package=is_package):
        top = name.split(".")[0]
        if top in OURS:
            if top in ("backend", "reminders") and layer(name) not in ALLOWED[own]:
                wrong.append(f"{module}:{line} imports {name} ({own} -> {layer(name)})")
            elif top not in ("backend", "reminders"):
                wrong.append(f"{module}:{line} imports {name} (outside the application)")
        elif own != "web" and top in WEB_LIBRARIES:
            wrong.append(f"{module}:{line} imports {name} ({own} -> web framework)")
        elif own == "core" and (top in NOT_FOR_THE_CORE or top in WEB_LIBRARIES):
            wrong.append(f"{module}:{line} imports {name} (core -> {top})")
    return wrong


def test_no_import_points_up_a_layer() -> None:
    wrong = [line for module in EVERY_MODULE for line in upward_imports(module)]
    assert wrong == []


def test_the_scan_sees_late_relative_and_framework_imports() -> None:
    # The scan is the test's own machinery: it must catch what a hurried edit would add.
    source = (
        "from reminders.core.dates import local_today\n"
        "from . import models\n"
        "def late():\n"
        "    from .. import dispatch\n"
        "    from backend.services import plans\n"
        "    import flask\n"
    )
    assert upward_imports("reminders.data.example", source) == [
        "reminders.data.example:4 imports reminders.dispatch (data -> engine)",
        "reminders.data.example:5 imports backend.services.plans (data -> web)",
        "reminders.data.example:6 imports flask (data -> web framework)",
    ]
    assert upward_imports("reminders.core.example", "import sqlmodel\nimport tomllib\n") == [
        "reminders.core.example:1 imports sqlmodel (core -> sqlmodel)"
    ]
    assert upward_imports("backend.example", "import flask\nfrom reminders import outbox\n") == []
