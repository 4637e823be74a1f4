"""The regimen library: one TOML file per regimen in ``regimens/``, validated on load.

A regimen describes *what the sources say* about one treatment: its dose phases
and their patterns, premedication, supportive medicines, lab tests, risk windows,
check-in cadence, milestones, the options the care team may choose, extension
limits, where doses are given and which infection prophylaxis is indicated.
Every clinical number carries a ``source`` (a seed file name and the place in it)
so that a clinician can check it; where a source gives no number (a prophylaxis
dose, an allopurinol dose) the file gives none and the care team enters it.

The files are parsed with :mod:`tomllib` and validated by the pydantic models
below (``extra="forbid"``: an unknown key is an error, not silently ignored). A
bad file raises :class:`RegimenError` naming the file and the field path, e.g.
``alemtuzumab_sc.toml: phases[1].weekdays: 'funday' is not a weekday ...``.

Day numbering used throughout: day 1 is the plan's start date, day 0 the day
before; week *n* is days ``7(n-1)+1 .. 7n``. Risk windows are the exception: they
count days of treatment received (from the first dose given, days on hold not
counted; see :class:`RiskWindow`).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from functools import cache, cached_property
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from reminders.core.datafiles import read_toml
from reminders.core.labels import label_for_name, labels

DEFAULT_DIRECTORY = Path(__file__).parent / "regimens"
_VALUE_ERROR = re.compile(r"^Value error, ")

#: Weekday names as written in the TOML files and accepted as option values; index = ``date.weekday()``.
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Unit = Literal["mg", "mg/m2"]
Route = Literal["sc", "iv", "oral"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
Text = Annotated[str, Field(min_length=1)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
PositiveFloat = Annotated[float, Field(gt=0)]


class RegimenError(ValueError):
    """A regimen file is missing, unreadable or invalid; the message names the file and field."""


class UnknownRegimen(KeyError):
    """No regimen with this id exists in the library."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a readable sentence
        return str(self.args[0]) if self.args else "unknown regimen"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Pairs of fields of which a regimen file must give exactly one (two ways to say when).
    exactly_one_of: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        for first, second in self.exactly_one_of:
            if (getattr(self, first) is None) == (getattr(self, second) is None):
                raise ValueError(f"give exactly one of {first} or {second}")
        return self


class OptionRef(_Model):
    """A value taken from one of the regimen's options: ``{ option = "weekdays" }`` in TOML."""

    option: Identifier


def _or_option(inner: Any) -> PlainValidator:
    """Validator for a field that holds either a literal of type ``inner`` or an ``OptionRef``.

    A plain union would report errors twice (once per member, with the member's
    name in the path); this keeps the path to the field itself.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(inner)

    def validate(value: Any) -> Any:
        if isinstance(value, OptionRef):
            return value
        if isinstance(value, Mapping) and "option" in value:
            if set(value) != {"option"} or not isinstance(value["option"], str):
                raise ValueError('an option reference is written { option = "name" }')
            return OptionRef(option=value["option"])
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            raise ValueError(_inner_errors(exc)) from None

    return PlainValidator(validate)


def _inner_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = _format_loc(err["loc"])
        msg = _VALUE_ERROR.sub("", err["msg"])
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def _check_weekday(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in WEEKDAYS:
        raise ValueError(f"{value!r} is not a weekday; use one of {', '.join(WEEKDAYS)}")
    return value.lower()


WeekdayName = Annotated[str, PlainValidator(_check_weekday)]


def _dump_option_or(value: Any) -> Any:
    return {"option": value.option} if isinstance(value, OptionRef) else value


# The explicit serializer keeps model_dump() exact: an option reference dumps as written in TOML.
_DUMP = PlainSerializer(_dump_option_or)
IntOrOption = Annotated[int | OptionRef, _or_option(PositiveInt), _DUMP]
FloatOrOption = Annotated[float | OptionRef, _or_option(PositiveFloat), _DUMP]
WeekdaysOrOption = Annotated[
    tuple[str, ...] | OptionRef, _or_option(tuple[WeekdayName, ...]), _DUMP
]


# --------------------------------------------------------------------------- options
class _OptionBase(_Model):
    label: Text
    source: Text


class BoolOption(_OptionBase):
    """A yes/no choice (e.g. start with a dose escalation)."""

    type: Literal["bool"]
    default: bool


class _RangeOption(_OptionBase):
    """A number within ``min..max``; no ``default`` means the care team must choose."""

    type: Literal["int", "number"]
    min: float
    max: float
    default: float | None = None

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min > self.max:
            raise ValueError("min must not be above max")
        if self.default is not None and not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default} is outside {self.min}..{self.max}")
        return self


class IntOption(_RangeOption):
    """A whole number within ``min..max`` (e.g. a number of doses)."""

    type: Literal["int"]
    min: int
    max: int
    default: int | None = None


class NumberOption(_RangeOption):
    """A number within ``min..max`` (e.g. a dose within a published range)."""

    type: Literal["number"]


class ChoiceOption(_OptionBase):
    """One value out of a fixed list (e.g. an interval of 2 or 3 months)."""

    type: Literal["choice"]
    choices: Annotated[tuple[int | str, ...], Field(min_length=1)]
    default: int | str | None = None

    @model_validator(mode="after")
    def _default_allowed(self) -> ChoiceOption:
        if self.default is not None and self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not one of {list(self.choices)}")
        return self


class WeekdaysOption(_OptionBase):
    """A set of exactly ``count`` distinct weekdays (e.g. three injection days a week)."""

    type: Literal["weekdays"]
    count: PositiveInt
    default: tuple[WeekdayName, ...]

    @model_validator(mode="after")
    def _default_count(self) -> WeekdaysOption:
        if len(set(self.default)) != len(self.default) or len(self.default) != self.count:
            raise ValueError(f"default must name exactly {self.count} distinct weekdays")
        return self


Option = Annotated[
    BoolOption | IntOption | NumberOption | ChoiceOption | WeekdaysOption,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- phases
class UsualMax(_Model):
    """The usual largest single dose of a phase, in the phase's unit (mg or mg/m2).

    A dose recorded above it (in mg/m2 phases: above it times the body surface area)
    asks the care team to confirm; it never blocks and never changes the dose.
    """

    amount: PositiveFloat
    source: Text


class _PhaseBase(_Model):
    id: Identifier
    name: Text
    unit: Unit
    source: Text
    route: Route | None = None  # None: the regimen's route
    enabled_by: Identifier | None = None  # a bool option; the phase exists only when it is true
    note: str | None = None  # shown to the care team (e.g. "over 2 hours")
    extendable: bool = False
    usual_max: UsualMax | None = None


class DailyPhase(_PhaseBase):
    """Doses on consecutive days, one amount per day (a dose escalation)."""

    pattern: Literal["daily"]
    amounts: Annotated[tuple[PositiveFloat, ...], Field(min_length=1)]


class WeekdaysPhase(_PhaseBase):
    """``count`` doses on fixed weekdays (three times a week), never two on one day."""

    pattern: Literal["weekdays"]
    weekdays: WeekdaysOrOption
    count: PositiveInt
    amount: PositiveFloat

    @field_validator("weekdays")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | OptionRef) -> tuple[str, ...] | OptionRef:
        if isinstance(value, tuple) and (not value or len(set(value)) != len(value)):
            raise ValueError("weekdays must be distinct and not empty")
        return value


class IntervalPhase(_PhaseBase):
    """Doses every ``every_days`` days or ``every_months`` calendar months.

    The number of doses is ``count``, or as many as start within ``span_months``
    of the first one (e.g. every 3 months for at most 2 years = 8 doses).
    ``amount`` may be absent when the source gives no dose (the care team enters it).
    """

    pattern: Literal["interval"]
    every_days: PositiveInt | None = None
    every_months: IntOrOption | None = None
    count: PositiveInt | None = None
    span_months: PositiveInt | None = None
    amount: PositiveFloat | None = None
    start_after_previous_days: PositiveInt | None = None
    start_after_previous_months: PositiveInt | None = None

    exactly_one_of = (("every_days", "every_months"), ("count", "span_months"))

    @model_validator(mode="after")
    def _one_start(self) -> IntervalPhase:
        if self.start_after_previous_days and self.start_after_previous_months:
            raise ValueError("give at most one of start_after_previous_days/_months")
        return self


class CycleDose(_Model):
    """Doses on given days of some cycles: ``cycles = [1]``, or ``from_cycle``/``to_cycle``/``every``."""

    days: Annotated[tuple[int, ...], Field(min_length=1)]
    amount: FloatOrOption
    cycles: tuple[PositiveInt, ...] | None = None
    from_cycle: PositiveInt | None = None
    to_cycle: PositiveInt | None = None
    every: PositiveInt = 1
    source: Text

    @model_validator(mode="after")
    def _cycle_form(self) -> CycleDose:
        if self.cycles is not None and (self.from_cycle or self.to_cycle):
            raise ValueError("give either cycles or from_cycle/to_cycle, not both")
        if self.from_cycle and self.to_cycle and self.from_cycle > self.to_cycle:
            raise ValueError("from_cycle must not be after to_cycle")
        if len(set(self.days)) != len(self.days):
            raise ValueError("days must be distinct")
        return self

    def applies_to(self, cycle: int) -> bool:
        """Whether this rule gives a dose in ``cycle`` (1-based)."""
        if self.cycles is not None:
            return cycle in self.cycles
        first = self.from_cycle or 1
        if cycle < first or (self.to_cycle is not None and cycle > self.to_cycle):
            return False
        return (cycle - first) % self.every == 0


class CyclesPhase(_PhaseBase):
    """Repeating cycles of ``cycle_length_days``; cycle 1 day ``day_origin`` is the start date."""

    pattern: Literal["cycles"]
    cycle_length_days: IntOrOption
    cycles: IntOrOption
    day_origin: Literal[0, 1] = 1
    doses: Annotated[tuple[CycleDose, ...], Field(min_length=1)]


Phase = Annotated[
    DailyPhase | WeekdaysPhase | IntervalPhase | CyclesPhase, Field(discriminator="pattern")
]


# --------------------------------------------------------------------------- the rest
class Administration(_Model):
    """Where doses are given: the first one in hospital (then home/outpatient) or all of them."""

    in_hospital: Literal["first", "all"]
    first_dose_observation_hours: PositiveFloat | None = None
    source: Text


class PremedItem(_Model):
    """One premedication, optionally only for doses in the first ``within_first_days`` days.

    ``text`` is the sentence for the care team and the site; ``label`` the key of its
    short name in every language (``labels.toml``), which the SMS quotes.
    """

    text: Text
    label: Identifier
    within_first_days: PositiveInt | None = None
    source: Text


PremedGiver = Literal["care_team", "patient", "care_team_in_hospital"]


class Premedication(_Model):
    """Premedication before each dose; the reminder goes ``minutes_before`` the dose time.

    ``given_by``: who gives it. ``care_team``: the hospital gives it before every dose
    (every dose is in hospital); ``patient``: the patient takes it at home;
    ``care_team_in_hospital``: the team for a dose in hospital, the patient for one at
    home (s.c. alemtuzumab after the first injection). The SMS follows it: a
    premedication the team gives is never announced as one to take.
    """

    minutes_before: PositiveInt
    timing_source: Text
    given_by: PremedGiver
    given_by_source: Text
    items: Annotated[tuple[PremedItem, ...], Field(min_length=1)]

    def given_by_team(self, in_hospital: bool) -> bool:
        """Whether the care team gives the premedication of a dose (in hospital or not)."""
        return self.given_by == "care_team" or (
            self.given_by == "care_team_in_hospital" and in_hospital
        )


class Supportive(_Model):
    """A supportive medicine taken daily from ``from_day`` to ``to_day`` (None: until the treatment is stopped)."""

    id: Identifier
    drug: Text
    title: Text
    dose_text: str | None = None  # only when the source gives it; otherwise "as prescribed"
    from_day: int
    to_day: IntOrOption | None = None
    pause_during_holds: bool = False
    source: Text


class LabTest(_Model):
    """A test repeated every ``every_weeks`` weeks while treatment runs."""

    id: Identifier
    name: Text
    title: Text
    every_weeks: PositiveInt = 1
    source: Text


RiskKind = Literal["infusion_reactions", "cmv", "low_platelets", "low_neutrophils", "infection"]


class RiskWindow(_Model):
    """A period with more frequent check-ins, in days or weeks of treatment received.

    Day *n* of a window is the *n*-th day counted from the first dose given (or
    planned, before any is recorded), days on hold not counted: a hold moves the
    window (see :func:`reminders.core.planner.treatment_days_received`).
    ``through_last_dose_plus_days``: the window also runs, from its first day, until
    that many days after the last dose of treatment, whichever ends later (a risk
    reported until the end of treatment, such as CMV reactivation).
    """

    id: Identifier
    kind: RiskKind
    name: Text
    start_day: PositiveInt | None = None
    end_day: PositiveInt | None = None
    start_week: PositiveInt | None = None
    end_week: PositiveInt | None = None
    through_last_dose_plus_days: int | None = Field(default=None, ge=0, strict=True)
    checkin_every_days: PositiveInt = 1
    note: str | None = None
    source: Text

    @model_validator(mode="after")
    def _days_or_weeks(self) -> RiskWindow:
        by_day = self.start_day is not None and self.end_day is not None
        by_week = self.start_week is not None and self.end_week is not None
        given = [self.start_day, self.end_day, self.start_week, self.end_week]
        if by_day == by_week or sum(v is not None for v in given) != 2:
            raise ValueError("give start_day and end_day, or start_week and end_week")
        if self.first_day > self.last_day:
            raise ValueError("the window ends before it starts")
        return self

    @property
    def first_day(self) -> int:
        """First day of the window (day 1 = start date)."""
        return self.start_day if self.start_day is not None else 7 * (self.start_week - 1) + 1  # type: ignore[operator]

    @property
    def last_day(self) -> int:
        """Last day of the window, inclusive."""
        return self.end_day if self.end_day is not None else 7 * self.end_week  # type: ignore[operator]


class TaperStep(_Model):
    """Check-ins after the last dose until ``until_weeks_after_last_dose`` weeks after it.

    Every ``every_days`` days, or ``times_per_week`` times in each week counted from
    the last dose (twice: 3 and 7 days into the week).
    """

    until_weeks_after_last_dose: PositiveInt
    every_days: PositiveInt | None = None
    times_per_week: Annotated[int, Field(ge=1, le=7, strict=True)] | None = None
    source: Text

    exactly_one_of = (("every_days", "times_per_week"),)

    @cached_property
    def _week_offsets(self) -> frozenset[int]:
        # Spread over the week, ending on the weekday of the last dose (offset 0).
        k = self.times_per_week or 1
        return frozenset((7 * (i + 1)) // k % 7 for i in range(k))

    def due(self, days_after_last_dose: int) -> bool:
        """Whether a check-in falls ``days_after_last_dose`` days after the last dose."""
        if self.every_days is not None:
            return days_after_last_dose % self.every_days == 0
        return days_after_last_dose % 7 in self._week_offsets


class CheckinPolicy(_Model):
    """How often to ask how the patient is (risk windows add daily check-ins).

    ``every_days`` while treatment runs (and on dose days where ``on_dose_days``);
    after the last dose, the ``after_treatment`` steps in order; after the last step,
    its cadence goes on while a prophylaxis course of the patient runs.
    """

    every_days: PositiveInt
    on_dose_days: bool = False
    after_treatment: Annotated[tuple[TaperStep, ...], Field(min_length=1)]
    source: Text

    @field_validator("after_treatment")
    @classmethod
    def _increasing(cls, steps: tuple[TaperStep, ...]) -> tuple[TaperStep, ...]:
        weeks = [s.until_weeks_after_last_dose for s in steps]
        if any(b <= a for a, b in pairwise(weeks)):
            raise ValueError(
                f"until_weeks_after_last_dose must increase from step to step, got {weeks}"
            )
        return steps

    def after_treatment_step(self, days_after_last_dose: int) -> TaperStep | None:
        """The taper step of a day after the last dose (None after the last step)."""
        for step in self.after_treatment:
            if days_after_last_dose <= 7 * step.until_weeks_after_last_dose:
                return step
        return None


class Decision(_Model):
    """What the care team must decide at a milestone, with its source (shown as a task)."""

    text: Text
    source: Text


class Milestone(_Model):
    """A dated review: on ``day`` of treatment, or ``after_last_dose_months`` after the last dose.

    ``day`` counts days of treatment received from the first dose given (see
    :mod:`reminders.core.dose_schedule`). A milestone with a ``decision`` is a task for
    the care team on its day; the patient gets a neutral note, never a congratulation.
    """

    id: Identifier
    name: Text
    title: Text
    day: PositiveInt | None = None
    after_last_dose_months: PositiveInt | None = None
    decision: Decision | None = None
    source: Text

    exactly_one_of = (("day", "after_last_dose_months"),)


class ProphylaxisDefault(_Model):
    """An indicated prophylaxis; never a dose (the care team enters dose and frequency).

    ``mandatory`` must be written in every entry (true or false, no default), so that
    nobody adds a prophylaxis without deciding whether a plan may run without it; a
    mandatory entry names the passage that makes it so in ``mandatory_source``.
    Starting a plan proposes a course for every entry (the care team confirms or
    declines it); a mandatory one still not active a day after the start raises an
    alert (``reminders.core.prophylaxis.missing_mandatory_prophylaxis``).
    """

    id: Identifier
    drug: Annotated[str, Field(min_length=1, max_length=60)]  # the course's drug column: 60
    purpose: Text
    alternatives: tuple[Text, ...] = ()
    start_day: int = 1
    min_months_after_last_dose: PositiveInt
    cd4_rule: bool
    mandatory: Annotated[bool, Field(strict=True)]
    mandatory_source: Text | None = None
    note: str | None = None
    source: Text

    @model_validator(mode="after")
    def _mandatory_has_source(self) -> ProphylaxisDefault:
        if self.mandatory and self.mandatory_source is None:
            raise ValueError(
                "a mandatory prophylaxis needs mandatory_source (the passage saying so)"
            )
        if not self.mandatory and self.mandatory_source is not None:
            raise ValueError("mandatory_source is only for mandatory = true")
        return self


class Extension(_Model):
    """How far the care team may extend the extendable phase."""

    max_extra_weeks: PositiveInt
    condition: Text
    source: Text


class SourcedText(_Model):
    """A sentence with its source (watch items, notes for the care team)."""

    text: Text
    source: Text


ExtraSymptom = Literal["jaundice", "injection_site"]


class Regimen(_Model):
    """One regimen, validated. ``id`` is the file stem."""

    id: Identifier
    name: Text
    drug: Text
    disease: Text
    route: Route
    summary: Text
    sources: Annotated[tuple[Text, ...], Field(min_length=1)]
    options: dict[Identifier, Option] = Field(default_factory=dict)
    phases: Annotated[tuple[Phase, ...], Field(min_length=1)]
    administration: Administration
    premedication: Premedication | None = None
    supportive: tuple[Supportive, ...] = ()
    labs: tuple[LabTest, ...] = ()
    risk_windows: Annotated[tuple[RiskWindow, ...], Field(min_length=1)]
    checkins: CheckinPolicy
    milestones: tuple[Milestone, ...] = ()
    prophylaxis: tuple[ProphylaxisDefault, ...] = ()
    extension: Extension | None = None
    watch_for: tuple[SourcedText, ...] = ()
    extra_symptoms: tuple[ExtraSymptom, ...] = ()
    care_team_notes: tuple[SourcedText, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Regimen:
        self._check_ids()
        self._check_first_week()
        self._check_premedication()
        self._check_phases()
        self._check_option_refs()
        self._check_labels()
        return self

    def sms_names(self) -> dict[str, str]:
        """Every value of the regimen an SMS may name, by where it is written.

        The drug, the supportive medicines, the prophylaxis drugs and their alternatives
        and the lab tests are written by one of an entry's ``names`` in ``labels.toml``;
        the premedication items by an entry's key (``label``).
        """
        names = {"drug": self.drug}
        names |= {f"supportive[{i}].drug": s.drug for i, s in enumerate(self.supportive)}
        names |= {f"labs[{i}].name": lab.name for i, lab in enumerate(self.labs)}
        for i, entry in enumerate(self.prophylaxis):
            names[f"prophylaxis[{i}].drug"] = entry.drug
            for j, alternative in enumerate(entry.alternatives):
                names[f"prophylaxis[{i}].alternatives[{j}]"] = alternative
        return names

    def _check_labels(self) -> None:
        # Every value an SMS names has a short name in every language: no English word
        # reaches a French or Dutch SMS (issue 15, item 4).
        for where, name in self.sms_names().items():
            if label_for_name(name) is None:
                raise ValueError(f"{where}: {name!r} is none of the names in labels.toml")
        for i, item in enumerate(self.premedication.items if self.premedication else ()):
            if item.label not in labels():
                raise ValueError(
                    f"premedication.items[{i}].label: {item.label!r} is not in labels.toml"
                )

    def _check_ids(self) -> None:
        for name, items in (
            ("phases", self.phases),
            ("supportive", self.supportive),
            ("labs", self.labs),
            ("risk_windows", self.risk_windows),
            ("milestones", self.milestones),
            ("prophylaxis", self.prophylaxis),
        ):
            ids = [item.id for item in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name}: ids must be unique, got {ids}")

    def _check_premedication(self) -> None:
        premed = self.premedication
        if (
            premed is not None
            and premed.given_by == "care_team"
            and self.administration.in_hospital != "all"
        ):
            raise ValueError(
                "premedication.given_by: 'care_team' needs every dose in hospital "
                "(administration.in_hospital = \"all\"); use 'care_team_in_hospital'"
            )

    def _check_first_week(self) -> None:
        # The first week is always a risk window (infusion/injection reactions).
        if not any(w.first_day <= 1 and w.last_day >= 7 for w in self.risk_windows):
            raise ValueError("risk_windows: one window must cover the first week (days 1-7)")

    def _check_phases(self) -> None:
        for i, phase in enumerate(self.phases):
            where = f"phases[{i}]"
            if phase.enabled_by is not None:
                opt = self.options.get(phase.enabled_by)
                if not isinstance(opt, BoolOption):
                    raise ValueError(
                        f"{where}.enabled_by: {phase.enabled_by!r} is not a bool option"
                    )
            if phase.usual_max is not None:
                for amount in _literal_amounts(phase, self.options):
                    if amount > phase.usual_max.amount:
                        raise ValueError(
                            f"{where}.usual_max: {phase.usual_max.amount:g} is below the "
                            f"phase's own dose {amount:g}"
                        )
            if isinstance(phase, CyclesPhase) and i != 0:
                raise ValueError(f"{where}.pattern: a cycles phase must be the first phase")
            if phase.extendable:
                if not isinstance(phase, WeekdaysPhase) or i != len(self.phases) - 1:
                    raise ValueError(
                        f"{where}.extendable: only the last, weekdays phase may be extended"
                    )
                if self.extension is None:
                    raise ValueError(f"{where}.extendable: needs an [extension] table")
        if self.extension is not None and not any(p.extendable for p in self.phases):
            raise ValueError("extension: no phase is extendable")

    def _check_option_refs(self) -> None:
        expected: list[tuple[str, Any, tuple[type, ...]]] = []
        for i, phase in enumerate(self.phases):
            where = f"phases[{i}]"
            if isinstance(phase, WeekdaysPhase):
                expected.append((f"{where}.weekdays", phase.weekdays, (WeekdaysOption,)))
            elif isinstance(phase, IntervalPhase):
                expected.append(
                    (f"{where}.every_months", phase.every_months, (ChoiceOption, IntOption))
                )
            elif isinstance(phase, CyclesPhase):
                ints = (ChoiceOption, IntOption)
                expected.append((f"{where}.cycle_length_days", phase.cycle_length_days, ints))
                expected.append((f"{where}.cycles", phase.cycles, ints))
                for j, rule in enumerate(phase.doses):
                    expected.append((f"{where}.doses[{j}].amount", rule.amount, (NumberOption,)))
        for i, item in enumerate(self.supportive):
            expected.append((f"supportive[{i}].to_day", item.to_day, (IntOption, ChoiceOption)))
        for where, value, kinds in expected:
            if isinstance(value, OptionRef):
                opt = self.options.get(value.option)
                if opt is None:
                    raise ValueError(f"{where}: refers to unknown option {value.option!r}")
                if not isinstance(opt, kinds):
                    raise ValueError(
                        f"{where}: option {value.option!r} has the wrong type ({opt.type})"
                    )
                if isinstance(opt, ChoiceOption) and not all(
                    isinstance(c, int) for c in opt.choices
                ):
                    raise ValueError(f"{where}: option {value.option!r} must offer whole numbers")

    # ------------------------------------------------------------------ helpers
    def usual_max_of(self, phase_label: str) -> UsualMax | None:
        """The usual maximum of the phase a dose belongs to (``PlannedDose.phase``).

        Extension doses ("extension") belong to the extendable phase.
        """
        for phase in self.phases:
            if phase.id == phase_label or (phase_label == "extension" and phase.extendable):
                return phase.usual_max
        return None

    @property
    def mandatory_prophylaxis(self) -> tuple[ProphylaxisDefault, ...]:
        """The prophylaxis entries every patient on this regimen must receive."""
        return tuple(p for p in self.prophylaxis if p.mandatory)

    def resolve_options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check the care team's option values and fill in defaults.

        Returns every option's value (weekdays as a sorted tuple of ``date.weekday()``
        numbers). Raises ``ValueError`` naming the option on an unknown option, a
        value out of range, or a missing value that has no default.
        """
        unknown = sorted(set(values) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise ValueError(
                f"unknown option {unknown[0]!r} for regimen {self.id} (options: {known})"
            )
        resolved: dict[str, Any] = {}
        for name, opt in self.options.items():
            if name in values:
                resolved[name] = _check_option_value(name, opt, values[name])
            elif opt.default is None:
                raise ValueError(f"option {name!r} is required for regimen {self.id}: {opt.label}")
            else:
                resolved[name] = _check_option_value(name, opt, opt.default)
        return resolved

    def resolved_options(self, values: Mapping[str, Any]) -> Mapping[str, Any]:
        """:meth:`resolve_options`, read-only and kept for the same values.

        Every planning pass checks the options of every plan, and most plans of a
        regimen share them.
        Values in another order, or unhashable ones, are checked again.
        """
        key = tuple(values.items())
        try:
            hit = self._resolved.get(key)
        except TypeError:  # an unhashable value (a list)
            return MappingProxyType(self.resolve_options(values))
        if hit is None:
            hit = MappingProxyType(self.resolve_options(values))
            if len(self._resolved) >= 1_024:
                self._resolved.clear()
            self._resolved[key] = hit
        return hit

    @cached_property
    def _resolved(self) -> dict[tuple[Any, ...], Mapping[str, Any]]:
        return {}

    @property
    def monitors_cmv(self) -> bool:
        """Whether the regimen watches for CMV reactivation (a CMV window or a CMV test).

        Then every fever during treatment or prophylaxis calls for a CMV test (002).
        """
        return any(w.kind == "cmv" for w in self.risk_windows) or any(
            lab.id.startswith("cmv") for lab in self.labs
        )

    def risk_day(self, day: int) -> RiskDay:
        """The risk windows of day ``day`` of treatment received (see :class:`RiskWindow`), from a table.

        The window days only: the planner adds the windows that run to the last dose.

        Built once per regimen: a planning pass asks for every day of every plan.
        """
        return self._risk_days.get(day, NO_RISK)

    @cached_property
    def _risk_days(self) -> dict[int, RiskDay]:
        table: dict[int, RiskDay] = {}
        for window in self.risk_windows:
            for day in range(window.first_day, window.last_day + 1):
                if day not in table:
                    windows = tuple(
                        w for w in self.risk_windows if w.first_day <= day <= w.last_day
                    )
                    table[day] = RiskDay(
                        windows,
                        tuple(w.id for w in windows),
                        any((day - w.first_day) % w.checkin_every_days == 0 for w in windows),
                    )
        return table

    @cached_property
    def windows_to_last_dose(self) -> tuple[RiskWindow, ...]:
        """The risk windows that also run until some days after the last dose."""
        return tuple(w for w in self.risk_windows if w.through_last_dose_plus_days is not None)

    def risk_windows_on_day(self, day: int) -> list[RiskWindow]:
        """The risk windows that contain day ``day`` of treatment received (not the last-dose tails)."""
        return list(self.risk_day(day).windows)


class RiskDay(NamedTuple):
    """The risk windows of one treatment day, their ids, and whether one asks for a check-in."""

    windows: tuple[RiskWindow, ...]
    ids: tuple[str, ...]
    checkin_due: bool


NO_RISK = RiskDay((), (), False)


def _literal_amounts(phase: Any, options: Mapping[str, Any]) -> list[float]:
    """The largest doses a phase can give: its numbers, and the top of a number option."""
    if isinstance(phase, DailyPhase):
        return list(phase.amounts)
    if isinstance(phase, CyclesPhase):
        out = []
        for rule in phase.doses:
            if not isinstance(rule.amount, OptionRef):
                out.append(rule.amount)
            elif isinstance(options.get(rule.amount.option), NumberOption):
                out.append(options[rule.amount.option].max)
        return out
    return [phase.amount] if phase.amount is not None else []


def _check_option_value(name: str, opt: Any, value: Any) -> Any:
    """Validate one option value against its declaration; ``ValueError`` names the option."""
    if isinstance(opt, BoolOption):
        if not isinstance(value, bool):
            raise ValueError(f"option {name!r} must be true or false, got {value!r}")
        return value
    if isinstance(opt, IntOption):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"option {name!r} must be a whole number, got {value!r}")
        if not opt.min <= value <= opt.max:
            raise ValueError(
                f"option {name!r} must be between {opt.min} and {opt.max}, got {value}"
            )
        return value
    if isinstance(opt, NumberOption):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"option {name!r} must be a number, got {value!r}")
        if not opt.min <= value <= opt.max:
            raise ValueError(
                f"option {name!r} must be between {opt.min} and {opt.max}, got {value}"
            )
        return float(value)
    if isinstance(opt, ChoiceOption):
        if isinstance(value, bool) or value not in opt.choices:
            raise ValueError(f"option {name!r} must be one of {list(opt.choices)}, got {value!r}")
        return value
    # Weekdays: names ("mon") or numbers (0 = Monday); exactly ``count`` distinct days.
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ValueError(f"option {name!r} must be a list of weekdays, got {value!r}")
    days: list[int] = []
    for item in value:
        if isinstance(item, str) and item.lower() in WEEKDAYS:
            days.append(WEEKDAYS.index(item.lower()))
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 6:
            days.append(item)
        else:
            raise ValueError(f"option {name!r}: {item!r} is not a weekday ({', '.join(WEEKDAYS)})")
    if len(set(days)) != len(days) or len(days) != opt.count:
        raise ValueError(
            f"option {name!r} must name exactly {opt.count} different weekdays, got {list(value)!r}"
        )
    return tuple(sorted(days))


# --------------------------------------------------------------------------- loading
# Names of discriminated-union members that pydantic inserts into error paths.
_UNION_TAGS = {"daily", "weekdays", "interval", "cycles", "bool", "int", "number", "choice"}


def _format_loc(loc: tuple[int | str, ...]) -> str:
    """``('phases', 1, 'weekdays', 'weekdays', 0)`` -> ``phases[1].weekdays[0]``."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        parent = loc[i - 1] if i else None
        grandparent = loc[i - 2] if i > 1 else None
        is_tag = part in _UNION_TAGS and (
            (isinstance(parent, int) and grandparent == "phases") or grandparent == "options"
        )
        if is_tag:
            continue
        out += f".{part}" if out else str(part)
    return out


def _error_message(filename: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = _format_loc(err["loc"])
        msg = _VALUE_ERROR.sub("", err["msg"])
        lines.append(f"{filename}: {where}: {msg}" if where else f"{filename}: {msg}")
    return "\n".join(lines)


def load_regimen_file(path: Path) -> Regimen:
    """Parse and validate one regimen file; its id is the file stem."""
    try:
        data = read_toml(path)
    except OSError as exc:
        raise RegimenError(f"{path.name}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegimenError(f"{path.name}: invalid TOML: {exc}") from exc
    if "id" in data:
        raise RegimenError(f"{path.name}: id: the id is the file name, do not set it")
    try:
        return Regimen.model_validate({"id": path.stem, **data})
    except ValidationError as exc:
        raise RegimenError(_error_message(path.name, exc)) from None


def _load_directory(directory: Path) -> dict[str, Regimen]:
    if not directory.is_dir():
        raise RegimenError(f"{directory}: regimen directory not found")
    return {path.stem: load_regimen_file(path) for path in sorted(directory.glob("*.toml"))}


@cache
def _default_regimens() -> dict[str, Regimen]:
    return _load_directory(DEFAULT_DIRECTORY)


def load_regimens(directory: Path | None = None) -> dict[str, Regimen]:
    """All regimens in ``directory`` (default: the packaged library, read once and cached)."""
    if directory is None:
        return dict(_default_regimens())
    return _load_directory(Path(directory))


@cache
def premedication_label_keys() -> dict[str, str]:
    """The ``labels.toml`` key of every premedication text of the library, by text.

    A planned premedication event carries its items' texts; the SMS names them by
    their short names. One text has one short name across the library (checked here).
    """
    keys: dict[str, str] = {}
    for regimen in _default_regimens().values():
        for item in regimen.premedication.items if regimen.premedication else ():
            if keys.setdefault(item.text, item.label) != item.label:
                raise RegimenError(
                    f"{regimen.id}.toml: premedication {item.text!r} has two labels "
                    f"({keys[item.text]!r} and {item.label!r}) in the library"
                )
    return keys


def get_regimen(regimen_id: str) -> Regimen:
    """The packaged regimen ``regimen_id``; raises :class:`UnknownRegimen` if there is none."""
    try:
        return _default_regimens()[regimen_id]
    except KeyError:
        known = ", ".join(sorted(_default_regimens()))
        raise UnknownRegimen(f"unknown regimen {regimen_id!r} (known: {known})") from None
