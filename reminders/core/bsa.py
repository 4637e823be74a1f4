"""Body surface area (Mosteller) and mg/m2 dose calculations, shown to the care team only.

Mosteller: BSA (m2) = sqrt(height_cm x weight_kg / 3600) (clinical-brief.md; Mosteller RD,
N Engl J Med 1987). The calculation is returned as text so the care team can check
it. The dose a patient receives is always the one the care team confirms; these
numbers are an aid, never a prescription.

Rounding is half-up on the decimal value (as a person computes it): BSA to 2
decimals; doses to 1 decimal from 10 mg, 2 decimals below, and more below 0.5 mg, so
that the dose shown is always within 1% of the calculation (issue 11, item 10: an
inotuzumab 0.645 mg dose shown as 0.6 mg was 7% off). The dose uses the rounded BSA
that is displayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, Protocol

from reminders.core.clinical_rules import clinical_rules

SOURCE = "Mosteller formula, clinical-brief.md (Body surface area)"

# Plausible adult and child values; outside them the entry is almost surely a typing or
# unit error (height in metres or inches, weight in grams or pounds), not a patient.
HEIGHT_CM_RANGE = (40.0, 250.0)
WEIGHT_KG_RANGE = (2.0, 350.0)


@dataclass(frozen=True)
class BodySurfaceArea:
    """A body surface area in m2 (2 decimals) and how it was calculated."""

    m2: float
    height_cm: float
    weight_kg: float
    calculation: str
    source: str = SOURCE


@dataclass(frozen=True)
class DoseCalculation:
    """An mg/m2 dose turned into mg (within 1%: see :func:`dose_places`), with the calculation."""

    mg_per_m2: float
    m2: float
    mg: float
    calculation: str
    source: str = SOURCE


def _round(value: float, places: int) -> float:
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def _fmt(value: float) -> str:
    """170.0 -> '170', 1.5 -> '1.5' (no trailing zeros, no exponent)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _check(name: str, value: float, low: float, high: float, unit: str, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(
            f"{name} {_fmt(value)} {unit} is outside the plausible range "
            f"{_fmt(low)}-{_fmt(high)} {unit}; {hint}"
        )
    return float(value)


def mosteller(height_cm: float, weight_kg: float) -> BodySurfaceArea:
    """Body surface area by Mosteller; ``ValueError`` for implausible height or weight."""
    height = _check("height", height_cm, *HEIGHT_CM_RANGE, "cm", "enter the height in centimetres")
    weight = _check("weight", weight_kg, *WEIGHT_KG_RANGE, "kg", "enter the weight in kilograms")
    m2 = _round(math.sqrt(height * weight / 3600), 2)
    text = f"sqrt({_fmt(height)} cm x {_fmt(weight)} kg / 3600) = {m2:.2f} m2"
    return BodySurfaceArea(m2=m2, height_cm=height, weight_kg=weight, calculation=text)


#: Largest rounding error allowed on a shown dose, as a fraction of the dose (issue 11, item 10).
MAX_ROUNDING_ERROR = Decimal("0.01")


def dose_places(mg: Decimal | float) -> int:
    """Decimals to show a dose of ``mg`` with: 1 from 10 mg, 2 below, more below 0.5 mg.

    Rounding half-up to ``p`` decimals is off by at most half a unit of the last place,
    ``0.5 x 10^-p``; ``p`` grows until that is under 1% of the dose.
    """
    value = Decimal(repr(mg)) if isinstance(mg, float) else mg
    if value <= 0:
        raise ValueError(f"a dose must be above 0, got {mg!r}")
    places = 1 if value >= 10 else 2
    while Decimal("0.5").scaleb(-places) >= MAX_ROUNDING_ERROR * value:
        places += 1
    return places


def dose_for(mg_per_m2: float, bsa: BodySurfaceArea | float) -> DoseCalculation:
    """The dose in mg for ``mg_per_m2`` and a body surface area (a result of :func:`mosteller` or m2)."""
    if isinstance(mg_per_m2, bool) or not isinstance(mg_per_m2, int | float):
        raise ValueError(f"dose per m2 must be a number, got {mg_per_m2!r}")
    if not math.isfinite(mg_per_m2) or mg_per_m2 <= 0:
        raise ValueError(f"dose per m2 must be above 0, got {mg_per_m2!r}")
    m2 = bsa.m2 if isinstance(bsa, BodySurfaceArea) else bsa
    if isinstance(m2, bool) or not isinstance(m2, int | float) or not math.isfinite(m2) or m2 <= 0:
        raise ValueError(f"body surface area must be a number above 0, got {m2!r}")
    m2 = _round(float(m2), 2)
    # Multiply as decimals so that 375 x 1.82 is exactly 682.5, as on paper.
    exact = Decimal(repr(float(mg_per_m2))) * Decimal(repr(m2))
    mg = float(exact.quantize(Decimal(1).scaleb(-dose_places(exact)), ROUND_HALF_UP))
    text = f"{_fmt(mg_per_m2)} mg/m2 x {m2:.2f} m2 = {_fmt(mg)} mg"
    return DoseCalculation(mg_per_m2=float(mg_per_m2), m2=m2, mg=mg, calculation=text)


class UsualMaximum(Protocol):
    """A regimen phase's usual largest single dose (``reminders.core.regimens.UsualMax``)."""

    amount: float
    source: str


@dataclass(frozen=True)
class DoseWarning:
    """Something the care team must confirm about a dose; it never blocks nor changes it."""

    code: Literal["bsa_above_limit", "dose_above_usual_max"]
    message: str
    source: str


def dose_warnings(
    *,
    unit: str,
    bsa: BodySurfaceArea | float | None,
    dose_mg: float | None,
    usual_max: UsualMaximum | None,
) -> tuple[DoseWarning, ...]:
    """What the care team should confirm about one dose of a phase in ``unit``.

    * an mg/m2 dose with a body surface area above the limit of ``clinical_rules.toml``
      (2.5 m2, a care-team setting): a typing error, or a patient whose dose the team
      may cap;
    * ``dose_mg`` (the amount recorded) above the phase's usual maximum, in mg, or for
      mg/m2 phases the maximum times the body surface area (as :func:`dose_for` shows it).
    """
    out: list[DoseWarning] = []
    m2 = bsa.m2 if isinstance(bsa, BodySurfaceArea) else bsa
    rule = clinical_rules().doses
    if unit == "mg/m2" and m2 is not None and m2 > rule.bsa_confirm_above_m2:
        out.append(
            DoseWarning(
                "bsa_above_limit",
                f"Body surface area {m2:.2f} m2 is above {_fmt(rule.bsa_confirm_above_m2)} m2:"
                " check height and weight, and confirm the dose.",
                rule.source,
            )
        )
    if dose_mg is not None and usual_max is not None:
        if unit == "mg/m2":
            limit = dose_for(usual_max.amount, m2).mg if m2 else None
            shown = f"{_fmt(usual_max.amount)} mg/m2 x {m2:.2f} m2 = " if m2 else ""
        else:
            limit, shown = usual_max.amount, ""
        if limit is not None and dose_mg > limit:
            out.append(
                DoseWarning(
                    "dose_above_usual_max",
                    f"{_fmt(dose_mg)} mg is above the usual maximum of this phase"
                    f" ({shown}{_fmt(limit)} mg): confirm the dose.",
                    usual_max.source,
                )
            )
    return tuple(out)
