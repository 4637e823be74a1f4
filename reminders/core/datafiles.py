"""Reading the core's TOML data files, and loading them into validated pydantic models.

The triage rules and the red flags are lists of entries with an ``id``; a validation
error names the file, the entry by its id ("rule 'fever', severity: ...") and the field,
so a clinician editing the file sees what to fix.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["load_validated", "read_toml"]

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path) -> dict[str, Any]:
    """The contents of the TOML file at ``path`` (``OSError``, ``TOMLDecodeError`` as they come)."""
    with path.open("rb") as fh:
        return tomllib.load(fh)


def load_validated(path: Path, model: type[M], error: type[ValueError], entries: str) -> M:
    """Read ``path`` as ``model``; raise ``error`` naming the file, entry and field.

    ``entries`` is the key of the list of entries (``"rule"``, ``"flag"``).
    """
    try:
        data = read_toml(path)
        return model.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{path.name}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(_describe(err, data, entries) for err in exc.errors())
        raise error(f"{path.name}: {problems}") from exc


def _describe(err: Mapping[str, Any], data: Mapping[str, Any], entries: str) -> str:
    """Name the entry by its id rather than its index."""
    loc = list(err["loc"])
    prefix = ".".join(str(p) for p in loc)
    if len(loc) >= 2 and loc[0] == entries and isinstance(loc[1], int):
        try:
            entry_id = data[entries][loc[1]].get("id", f"#{loc[1]}")
        except (IndexError, AttributeError, KeyError):
            entry_id = f"#{loc[1]}"
        field = ".".join(str(p) for p in loc[2:])
        prefix = f"{entries} {entry_id!r}" + (f", {field}" if field else "")
    return f"{prefix}: {err['msg']}"
