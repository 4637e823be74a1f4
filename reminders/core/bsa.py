"""Body surface area (Mosteller) and mg/m2 dose calculations, shown to the care team only.

Mosteller: BSA (m2) = sqrt(height_cm x weight_kg / 3600) (clinical-brief.md; Mosteller RD,
N Engl J Med 1987). The calculation is returned as text so the care team can check
it. The dose a patient receives is always the one the care team confirms; these
numbers are an aid, never a prescription.

Rounding is half-up on the decimal value (as a person computes it): BSA to 2
decimals, doses to 1 decimal; the dose uses the rounded BSA that is displayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

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
    """An mg/m2 dose turned into mg (1 decimal), with the calculation as text."""

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
    mg = float(
        (Decimal(repr(float(mg_per_m2))) * Decimal(repr(m2))).quantize(
            Decimal("0.1"), ROUND_HALF_UP
        )
    )
    text = f"{_fmt(mg_per_m2)} mg/m2 x {m2:.2f} m2 = {_fmt(mg)} mg"
    return DoseCalculation(mg_per_m2=float(mg_per_m2), m2=m2, mg=mg, calculation=text)
