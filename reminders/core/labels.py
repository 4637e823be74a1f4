"""Short names, per language, of the medicines and tests a patient's SMS names.

``labels.toml`` holds one entry per medicine or test: the spellings it is written with
(``names``: in the regimen files, in prophylaxis courses, as a care team types it) and
what the patient reads in each language (the international name, short). The regimen
loader refuses a regimen whose SMS values have no entry (:mod:`reminders.core.regimens`),
and the SMS (:mod:`reminders.rendering`) and the printed calendar and its feed
(:mod:`reminders.core.treatment_calendar`) quote the entry in the patient's language.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reminders.core.clinical_rules import LANGUAGES
from reminders.core.datafiles import read_toml

__all__ = [
    "LABEL_MAX_LENGTH",
    "Label",
    "LabelError",
    "get_label",
    "label_for_name",
    "labels",
    "normalise",
    "short_name",
]

_PATH = Path(__file__).with_name("labels.toml")
#: The longest short name: the templates are measured with the library's own labels
#: (tests/reminders/test_sms_segments.py), this keeps a new one from growing past them.
LABEL_MAX_LENGTH = 32


class LabelError(ValueError):
    """labels.toml is invalid; the message names the entry and the field."""


class Label(BaseModel):
    """One medicine or test: how it is written, and its short name in every language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    names: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    en: Annotated[str, Field(min_length=1, max_length=LABEL_MAX_LENGTH)]
    fr: Annotated[str, Field(min_length=1, max_length=LABEL_MAX_LENGTH)]
    nl: Annotated[str, Field(min_length=1, max_length=LABEL_MAX_LENGTH)]
    source: Annotated[str, Field(min_length=1)]

    def text(self, language: str) -> str:
        """The short name in ``language`` (one of ``LANGUAGES``)."""
        return getattr(self, language)


def normalise(name: str) -> str:
    """A name as it is matched: case and runs of spaces ignored."""
    return re.sub(r"\s+", " ", name).strip().casefold()


@cache
def labels() -> dict[str, Label]:
    """Every entry of labels.toml by key, validated (read once, on first use)."""
    if set(LANGUAGES) != {"en", "fr", "nl"}:  # pragma: no cover - a new language adds a field
        raise LabelError("labels.toml: Label needs a field per language of LANGUAGES")
    data = read_toml(_PATH)
    entries: dict[str, Label] = {}
    seen: dict[str, str] = {}
    for key, raw in data.items():
        try:
            entry = Label.model_validate({"key": key, **raw})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise LabelError(f"labels.toml [{key}]: {problems}") from None
        for name in entry.names:
            other = seen.setdefault(normalise(name), key)
            if other != key:
                raise LabelError(f"labels.toml [{key}]: {name!r} is already a name of [{other}]")
        entries[key] = entry
    return entries


@cache
def _by_name() -> dict[str, Label]:
    return {normalise(name): entry for entry in labels().values() for name in entry.names}


def label_for_name(name: str | None) -> Label | None:
    """The entry ``name`` is one of the spellings of, or None."""
    return _by_name().get(normalise(name)) if name else None


def get_label(key: str) -> Label:
    """The entry ``key``; KeyError naming it when there is none."""
    try:
        return labels()[key]
    except KeyError:
        raise KeyError(f"labels.toml has no entry {key!r}") from None


def short_name(name: str | None, language: str) -> str:
    """A medicine or test as the patient reads it: its short name in ``language``.

    A name labels.toml does not know (a drug a care team typed for a prophylaxis course)
    is quoted as it was typed: the team chose it for this patient.
    """
    label = label_for_name(name)
    return label.text(language) if label is not None else (name or "")
