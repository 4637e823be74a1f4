"""Where a patient lives: the emergency number they are told to call and how temperatures are written.

One list of countries as data (``regions.toml``): the SMS, the information site and the
printable calendar take the number and the units from here, so that a Belgian reader is
told to call 112 and reads "38,0 C", and an American reader 911 and "100.4 F (38.0 C)".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Literal

from reminders.core.datafiles import read_toml

__all__ = [
    "Region",
    "RegionError",
    "all_regions",
    "celsius_to_fahrenheit",
    "default_region",
    "get_region",
    "one_decimal",
    "region_codes",
    "temperature_text",
]

_PATH = Path(__file__).with_name("regions.toml")
Unit = Literal["C", "F"]


class RegionError(ValueError):
    """regions.toml is not what the code expects."""


@dataclass(frozen=True)
class Region:
    """A country's emergency number and temperature units, first unit first."""

    code: str
    name: str
    emergency_number: str
    temperature_units: tuple[Unit, ...]
    source: str


@cache
def _regions() -> tuple[str, dict[str, Region]]:
    data = read_toml(_PATH)
    default = data.pop("default")
    regions: dict[str, Region] = {}
    for code, entry in data.items():
        units = tuple(entry["temperature_units"])
        if not units or not set(units) <= {"C", "F"} or len(set(units)) != len(units):
            raise RegionError(f"regions.toml [{code}]: temperature_units must be C and/or F")
        if len(code) != 2 or not code.isupper():
            raise RegionError(f"regions.toml [{code}]: use the two-letter ISO 3166 code")
        regions[code] = Region(
            code=code,
            name=entry["name"],
            emergency_number=entry["emergency_number"],
            temperature_units=units,
            source=entry["source"],
        )
    if default not in regions:
        raise RegionError(f"regions.toml: the default {default!r} is not listed")
    return default, regions


def region_codes() -> tuple[str, ...]:
    """Every country the data knows, by code."""
    return tuple(_regions()[1])


def all_regions() -> tuple[Region, ...]:
    """Every country the data knows, in the file's order."""
    return tuple(_regions()[1].values())


def default_region() -> Region:
    """The country the information site is written for, and a patient's when none is known."""
    default, regions = _regions()
    return regions[default]


def get_region(code: str | None) -> Region:
    """The region ``code`` names ("BE", "be"); the default one for None or an unknown code.

    An unknown code never leaves a patient without an emergency number: the default
    (where the care teams work) is the safe reading.
    """
    _, regions = _regions()
    return regions.get((code or "").upper(), default_region())


def celsius_to_fahrenheit(value_c: float) -> float:
    """°C to °F (exact; rounding is the writer's)."""
    return value_c * 9 / 5 + 32


def one_decimal(value: float, language: str) -> str:
    """``value`` rounded half up to one decimal: "37.6" in English, "37,6" in French and Dutch."""
    text = str(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
    return text.replace(".", ",") if language in ("fr", "nl") else text


def temperature_text(value_c: float, language: str, region: Region | None = None) -> str:
    """A temperature as a reader in ``region`` writes it: "38,0 C", or "100.4 F (38.0 C)".

    One decimal, decimal comma in French and Dutch; the region's first unit first and
    any other in brackets.
    """
    units = (region or default_region()).temperature_units
    written = {
        "C": f"{one_decimal(value_c, language)} C",
        "F": f"{one_decimal(celsius_to_fahrenheit(value_c), language)} F",
    }
    first, *others = units
    return written[first] + "".join(f" ({written[unit]})" for unit in others)
