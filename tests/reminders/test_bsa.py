"""Body surface area (Mosteller) and mg/m2 dose calculations."""

from __future__ import annotations

import math

import pytest

from reminders.core.bsa import BodySurfaceArea, dose_for, mosteller


def test_mosteller_value_and_calculation_text() -> None:
    bsa = mosteller(170, 70)
    assert bsa.m2 == 1.82
    assert bsa.calculation == "sqrt(170 cm x 70 kg / 3600) = 1.82 m2"
    assert "Mosteller" in bsa.source


@pytest.mark.parametrize(
    ("height", "weight", "m2"),
    [
        (180, 80, 2.0),  # sqrt(4) exactly
        (160.5, 55.2, 1.57),  # sqrt(2.46100) = 1.5688
        (100, 15, 0.65),  # a child: sqrt(0.41667) = 0.6455
    ],
)
def test_mosteller_known_values(height: float, weight: float, m2: float) -> None:
    assert mosteller(height, weight).m2 == m2
    assert math.isclose(
        mosteller(height, weight).m2, math.sqrt(height * weight / 3600), abs_tol=0.005
    )


def test_mosteller_text_keeps_decimals_of_inputs() -> None:
    assert mosteller(160.5, 55.2).calculation == "sqrt(160.5 cm x 55.2 kg / 3600) = 1.57 m2"
    assert mosteller(180, 80).calculation == "sqrt(180 cm x 80 kg / 3600) = 2.00 m2"


@pytest.mark.parametrize(
    ("height", "weight", "message"),
    [
        (1.70, 70, "height 1.7 cm is outside the plausible range 40-250 cm"),  # metres
        (170, 70000, "weight 70000 kg is outside the plausible range 2-350 kg"),  # grams
        (0, 70, "height 0 cm"),
        (170, -5, "weight -5 kg"),
        (float("nan"), 70, "height must be a number"),
        (170, float("inf"), "weight must be a number"),
        (True, 70, "height must be a number"),
        ("170", 70, "height must be a number"),
    ],
)
def test_mosteller_rejects_implausible_values(height: object, weight: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        mosteller(height, weight)  # type: ignore[arg-type]


def test_dose_for_rituximab_example() -> None:
    calc = dose_for(375, mosteller(170, 70))
    assert calc.mg == 682.5
    assert calc.m2 == 1.82
    assert calc.calculation == "375 mg/m2 x 1.82 m2 = 682.5 mg"


def test_dose_for_rounds_half_up_to_one_decimal() -> None:
    # 0.5 x 1.75 = 0.875 -> 0.9 (half-up on the decimal value, as on paper)
    assert dose_for(0.5, 1.75).mg == 0.9
    assert dose_for(0.8, 1.82).calculation == "0.8 mg/m2 x 1.82 m2 = 1.5 mg"  # 1.456
    assert dose_for(500, 2.0).calculation == "500 mg/m2 x 2.00 m2 = 1000 mg"


def test_dose_for_accepts_a_plain_m2_and_uses_the_rounded_value() -> None:
    assert dose_for(375, 1.8181).m2 == 1.82
    assert dose_for(375, 1.8181).mg == 682.5


@pytest.mark.parametrize(
    ("mg_per_m2", "bsa"), [(0, 1.8), (-375, 1.8), (float("nan"), 1.8), (375, 0), (375, -1.0)]
)
def test_dose_for_rejects_bad_input(mg_per_m2: float, bsa: float) -> None:
    with pytest.raises(ValueError):
        dose_for(mg_per_m2, bsa)


def test_results_are_frozen() -> None:
    bsa = mosteller(170, 70)
    assert isinstance(bsa, BodySurfaceArea)
    with pytest.raises(AttributeError):
        bsa.m2 = 2.0  # type: ignore[misc]
