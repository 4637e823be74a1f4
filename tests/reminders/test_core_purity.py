"""The pure core imports nothing of the web, the database or delivery."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import reminders.core

FORBIDDEN = ("flask", "sqlalchemy", "sqlmodel", "twilio", "apscheduler", "backend", "werkzeug")


def test_core_modules_import_no_web_or_database_code() -> None:
    modules = [f"reminders.core.{m.name}" for m in pkgutil.iter_modules(reminders.core.__path__)]
    assert len(modules) >= 5
    program = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"pure core pulled in: {result.stdout.strip()}"
