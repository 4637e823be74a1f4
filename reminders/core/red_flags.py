"""Red flags: the signs that mean "call your care team now", as one list of data.

``red_flags.toml`` is the single home of these signs. The SMS reply parser reads
their phrases (en, fr, nl), the triage makes every one of them urgent, and the
information site quotes their ``site`` wording in its "call now" list, so that the
site and the SMS never disagree (tests check both directions).

A flag may name symptom-menu codes (``symptoms``): a patient who answers "2"
(cough/breathless) to the menu reports the ``breathing`` red flag as surely as one
who writes "I can't breathe". A flag may apply to some drugs only (``drugs``); for
other drugs the sign still reaches the care team, as an ordinary symptom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reminders.core.clinical_rules import LANGUAGES, clinical_rules
from reminders.core.datafiles import load_validated
from reminders.core.regions import Region, temperature_text

__all__ = [
    "RedFlag",
    "RedFlagError",
    "RedFlags",
    "applicable_flags",
    "load_red_flags",
    "red_flag",
    "red_flags",
    "site_wording",
]

_FILE = Path(__file__).with_name("red_flags.toml")


class RedFlagError(ValueError):
    """The red-flag file is invalid; the message names the file, the flag and the field."""


class RedFlag(BaseModel):
    """One red flag of ``red_flags.toml`` (see the file's header for each field)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[a-z_]+$")
    summary: str = Field(min_length=1)
    site: dict[str, str]
    phrases: dict[str, tuple[str, ...]]
    symptoms: tuple[str, ...] = ()
    drugs: tuple[str, ...] | None = None
    fever_in_words: bool = False
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _every_language(self) -> RedFlag:
        for what, mapping in (("site", self.site), ("phrases", self.phrases)):
            missing = [lang for lang in LANGUAGES if not mapping.get(lang)]
            if missing:
                raise ValueError(f"{what} has no {', '.join(missing)} entry")
            extra = sorted(set(mapping) - set(LANGUAGES))
            if extra:
                raise ValueError(f"{what} has unknown language(s) {extra}")
        return self

    def applies_to(self, drug: str | None) -> bool:
        """Whether this flag is a red flag for a patient on ``drug`` (None: unknown drug)."""
        if self.drugs is None:
            return True
        # With no known drug, err towards urgent: the flag applies.
        return drug is None or drug.casefold() in {d.casefold() for d in self.drugs}

    def all_phrases(self) -> tuple[str, ...]:
        """Every phrase of every language (patients mix languages)."""
        return tuple(p for lang in LANGUAGES for p in self.phrases[lang])


class RedFlags(BaseModel):
    """The whole file, validated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    flag: tuple[RedFlag, ...] = Field(min_length=1)

    @property
    def flags(self) -> tuple[RedFlag, ...]:
        """The flags in file order (the order of the site's list)."""
        return self.flag

    @property
    def ids(self) -> frozenset[str]:
        """Every flag id."""
        return frozenset(f.id for f in self.flag)

    def by_id(self) -> Mapping[str, RedFlag]:
        """The flags keyed by id."""
        return {f.id: f for f in self.flag}


def load_red_flags(path: Path | str | None = None) -> RedFlags:
    """Load and validate a red-flag file (default: ``red_flags.toml``, cached)."""
    return _default() if path is None else _load(Path(path))


@cache
def _default() -> RedFlags:
    return _load(_FILE)


def _load(path: Path) -> RedFlags:
    flags = load_validated(path, RedFlags, RedFlagError, "flag")
    seen: set[str] = set()
    for f in flags.flag:
        if f.id in seen:
            raise RedFlagError(f"{path.name}: flag {f.id!r} is defined twice")
        seen.add(f.id)
    if sum(f.fever_in_words for f in flags.flag) > 1:
        raise RedFlagError(f"{path.name}: only one flag may be the fever in words")
    return flags


def red_flags() -> tuple[RedFlag, ...]:
    """The red flags of ``red_flags.toml``, in file order."""
    return load_red_flags().flags


def red_flag(flag_id: str) -> RedFlag:
    """One red flag by id (``KeyError`` if there is none)."""
    return load_red_flags().by_id()[flag_id]


def applicable_flags(
    reported: Iterable[str], drug: str | None, flags: RedFlags | None = None
) -> tuple[tuple[RedFlag, ...], tuple[RedFlag, ...]]:
    """Split reported signs into (red flags for this drug, red flags of another drug).

    ``reported`` holds flag ids and symptom codes: a symptom code that a flag names
    (menu "2" is ``breathing``) reports that flag. Order follows the file.
    """
    flags = flags or load_red_flags()
    codes = set(reported)
    hits = [f for f in flags.flags if f.id in codes or codes.intersection(f.symptoms)]
    return (
        tuple(f for f in hits if f.applies_to(drug)),
        tuple(f for f in hits if not f.applies_to(drug)),
    )


def site_wording(flag: RedFlag, language: str, region: Region | None = None) -> str:
    """The flag's line on the site's "call now" list, with the fever threshold as ``region`` writes it."""
    fever = temperature_text(clinical_rules().fever.threshold_c, language, region)
    return flag.site[language].format(fever=fever)
