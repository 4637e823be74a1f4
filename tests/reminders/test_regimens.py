"""The regimen library: every file loads, carries its sources, and bad files are named precisely."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from reminders.core.planner import PlanSpec, plan_doses
from reminders.core.regimens import (
    DEFAULT_DIRECTORY,
    CyclesPhase,
    DailyPhase,
    IntervalPhase,
    OptionRef,
    RegimenError,
    UnknownRegimen,
    WeekdaysPhase,
    get_regimen,
    load_regimens,
)

SEEDS = Path("/work/shared/seeds")
EXPECTED = {
    "alemtuzumab_sc",
    "alemtuzumab_iv",
    "ofatumumab_retreatment",
    "ofatumumab_lenalidomide",
    "rituximab_cll_chemo",
    "rituximab_fl_maintenance",
    "rituximab_fl_weekly",
    "inotuzumab_weekly",
    "inotuzumab_single",
}


def test_library_holds_every_required_regimen_with_id_equal_to_file_stem() -> None:
    regimens = load_regimens()
    assert set(regimens) == EXPECTED
    for regimen_id, regimen in regimens.items():
        assert regimen.id == regimen_id
        assert (DEFAULT_DIRECTORY / f"{regimen_id}.toml").is_file()


def test_default_library_is_cached() -> None:
    assert load_regimens()["alemtuzumab_sc"] is load_regimens()["alemtuzumab_sc"]
    assert get_regimen("alemtuzumab_sc") is load_regimens()["alemtuzumab_sc"]


def test_unknown_regimen_is_a_key_error_with_a_readable_message() -> None:
    with pytest.raises(UnknownRegimen, match="unknown regimen 'campath_daily'") as info:
        get_regimen("campath_daily")
    assert isinstance(info.value, KeyError)
    assert "alemtuzumab_sc" in str(info.value)


def _sources(value: Any) -> list[str]:
    """Every source string in a dumped regimen."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("source", "timing_source", "mandatory_source") and isinstance(item, str):
                found.append(item)
            elif key == "sources":
                found.extend(item)
            else:
                found.extend(_sources(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(_sources(item))
    return found


@pytest.mark.parametrize("regimen_id", sorted(EXPECTED))
def test_every_source_names_a_seed_file_or_is_marked_as_a_choice(regimen_id: str) -> None:
    regimen = get_regimen(regimen_id)
    sources = _sources(regimen.model_dump())
    assert sources
    seed_names = {p.name for p in SEEDS.glob("*.txt")} if SEEDS.is_dir() else set()
    for source in sources:
        cited = re.findall(r"\d{3}_[0-9a-f]{16}\.txt", source)
        assert cited or "care-team" in source or "clinical-brief.md" in source, source
        if seed_names:
            assert set(cited) <= seed_names, source


def test_alemtuzumab_sc_encodes_the_belgian_recommendations() -> None:
    r = get_regimen("alemtuzumab_sc")
    assert r.route == "sc"
    weekdays = r.options["weekdays"]
    assert weekdays.type == "weekdays" and weekdays.count == 3
    assert weekdays.default == ("mon", "wed", "fri")
    assert r.options["escalation"].default is False
    escalation, treatment = r.phases
    assert isinstance(escalation, DailyPhase) and escalation.amounts == (3, 10, 30)
    assert escalation.enabled_by == "escalation"
    assert isinstance(treatment, WeekdaysPhase)
    assert (treatment.count, treatment.amount, treatment.unit) == (36, 30, "mg")
    assert r.extension is not None and r.extension.max_extra_weeks == 6
    assert r.administration.in_hospital == "first"
    assert r.administration.first_dose_observation_hours == 2
    [allopurinol] = r.supportive
    assert (allopurinol.from_day, allopurinol.to_day) == (1, 14)
    assert [lab.id for lab in r.labs] == ["cmv_pcr"] and r.labs[0].every_weeks == 1
    windows = {w.id: (w.first_day, w.last_day) for w in r.risk_windows}
    assert windows == {
        "first_week": (1, 7),
        "low_platelets": (8, 28),
        "low_neutrophils": (22, 42),
        "cmv": (14, 58),  # 002: median 34 days after the start, range 14-58
    }
    [cmv] = [w for w in r.risk_windows if w.kind == "cmv"]
    assert cmv.through_last_dose_plus_days == 7  # and to the end of treatment (002, Lundin)
    assert r.windows_to_last_dose == (cmv,)
    milestones = {m.id: (m.day, m.after_last_dose_months) for m in r.milestones}
    assert milestones == {
        "week4_review": (29, None),
        "week12_marrow": (78, None),
        "transplant_gap": (None, 2),
    }
    prophylaxis = {p.id: p for p in r.prophylaxis}
    assert set(prophylaxis) == {"cotrimoxazole", "acyclovir"}
    for item in prophylaxis.values():
        assert item.min_months_after_last_dose == 6 and item.cd4_rule is True
    assert "pentamidine" in prophylaxis["cotrimoxazole"].alternatives[0]
    assert prophylaxis["acyclovir"].drug == "aciclovir"  # the INN; the entry keeps its id
    assert {"valaciclovir", "famciclovir"} <= set(prophylaxis["acyclovir"].alternatives)
    assert r.extra_symptoms == ("injection_site",)


@pytest.mark.parametrize("regimen_id", ["alemtuzumab_sc", "alemtuzumab_iv"])
def test_alemtuzumab_prophylaxis_is_mandatory_with_the_passages_that_say_so(
    regimen_id: str,
) -> None:
    # 003 "Patient management issues": cotrimoxazole "should be prescribed during treatment",
    # "All patients must receive acyclovir prophylaxis"; Table 4 repeats both; 002: guidelines
    # "recommend mandatory use" of antibacterial and antiviral prophylaxis.
    regimen = get_regimen(regimen_id)
    mandatory = {p.id: p for p in regimen.mandatory_prophylaxis}
    assert set(mandatory) == {"cotrimoxazole", "acyclovir"}
    for item in mandatory.values():
        assert item.mandatory is True
        assert "003_a1949903592dbecf.txt" in item.mandatory_source
        assert "Table 4" in item.mandatory_source
        assert "002_56971d7eaf23c097.txt" in item.mandatory_source
    assert "must receive acyclovir" in mandatory["acyclovir"].mandatory_source


def test_other_regimens_list_no_mandatory_prophylaxis() -> None:
    # Seeds 000, 001, 004 and the MabThera summary in 003 name no anti-infective
    # prophylaxis for ofatumumab, rituximab or inotuzumab: nothing to propose or alert on.
    for regimen_id, regimen in load_regimens().items():
        if regimen.drug != "alemtuzumab":
            assert regimen.prophylaxis == (), regimen_id
            assert regimen.mandatory_prophylaxis == (), regimen_id


def test_prophylaxis_never_carries_a_dose() -> None:
    # The sources give no prophylaxis dose: the care team enters dose and frequency.
    for regimen in load_regimens().values():
        for item in regimen.prophylaxis:
            assert not {"dose", "dose_text", "amount"} & set(type(item).model_fields)


def test_alemtuzumab_iv_escalation_is_mandatory_and_steroids_only_at_the_start() -> None:
    r = get_regimen("alemtuzumab_iv")
    assert "escalation" not in r.options
    assert isinstance(r.phases[0], DailyPhase) and r.phases[0].enabled_by is None
    assert r.administration.in_hospital == "all"
    assert r.premedication is not None
    steroid = [i for i in r.premedication.items if "steroid" in i.text]
    assert len(steroid) == 1 and steroid[0].within_first_days == 14


def test_other_regimens_shape() -> None:
    ofa_len = get_regimen("ofatumumab_lenalidomide")
    assert isinstance(ofa_len.phases[0], CyclesPhase)
    [lenalidomide] = ofa_len.supportive
    assert (lenalidomide.from_day, lenalidomide.to_day) == (9, None)
    assert lenalidomide.dose_text == "10 mg by mouth"

    retreat = get_regimen("ofatumumab_retreatment")
    assert all(isinstance(p, IntervalPhase) and p.amount is None for p in retreat.phases)

    rituximab = get_regimen("rituximab_cll_chemo")
    assert rituximab.phases[0].day_origin == 0
    [hydration] = rituximab.supportive
    assert hydration.from_day == -1  # 48 hours before the start
    assert any("25 x 10^9/L" in note.text for note in rituximab.care_team_notes)

    maintenance = get_regimen("rituximab_fl_maintenance").options["interval_months"]
    assert (maintenance.choices, maintenance.default) == ((2, 3), 3)

    assert get_regimen("inotuzumab_weekly").extra_symptoms == ("jaundice",)
    assert get_regimen("inotuzumab_single").extra_symptoms == ("jaundice",)
    for regimen_id in EXPECTED - {"inotuzumab_weekly", "inotuzumab_single"}:
        assert "jaundice" not in get_regimen(regimen_id).extra_symptoms


def test_rituximab_fl_weekly_is_four_doses_seven_days_apart_at_375_mg_m2() -> None:
    # 003, MabThera summary: relapsed/refractory follicular lymphoma, 375 mg/m2 once weekly x 4.
    r = get_regimen("rituximab_fl_weekly")
    assert (r.drug, r.route, r.sources) == ("rituximab", "iv", ("003_a1949903592dbecf.txt",))
    plan = PlanSpec(r, date(2026, 3, 2), "Europe/Brussels")
    doses = plan_doses(plan)
    assert [(x.date, x.amount, x.unit, x.in_hospital) for x in doses] == [
        (date(2026, 3, 2), 375, "mg/m2", True),
        (date(2026, 3, 9), 375, "mg/m2", True),
        (date(2026, 3, 16), 375, "mg/m2", True),
        (date(2026, 3, 23), 375, "mg/m2", True),
    ]
    assert "once weekly for four weeks" in doses[0].source
    # Premedication before every infusion, the infusion rates for the team.
    assert r.premedication is not None
    assert all(item.within_first_days is None for item in r.premedication.items)
    assert "50 mg/h" in (r.phases[0].note or "") and "100 mg/h" in (r.phases[0].note or "")
    # Severe reactions and the brain conditions (PML, PRES) are in the watch list.
    watch = " ".join(w.text for w in r.watch_for)
    for sign in ("breathlessness", "confusion", "sight", "speech", "walking"):
        assert sign in watch, sign
    # The maintenance decision 3 months after the last infusion is a care-team task.
    [milestone] = r.milestones
    assert milestone.after_last_dose_months == 3 and milestone.decision is not None


def test_rituximab_cll_cycle_length_is_a_care_team_setting_not_a_source_number() -> None:
    # 003 gives "6 cycles in total" but no cycle length: the length is an option.
    r = get_regimen("rituximab_cll_chemo")
    phase = r.phases[0]
    assert isinstance(phase, CyclesPhase) and phase.cycles == 6
    assert phase.cycle_length_days == OptionRef(option="cycle_length_days")
    option = r.options["cycle_length_days"]
    assert option.default == 28 and "care-team setting" in option.source
    assert "6 cycles" in phase.source and "28" not in phase.source
    three_weeks = PlanSpec(r, date(2026, 3, 2), "Europe/Brussels", {"cycle_length_days": 21})
    assert [x.date for x in plan_doses(three_weeks)][:3] == [
        date(2026, 3, 2),
        date(2026, 3, 24),  # cycle 2 day 1 = start + 21 + 1
        date(2026, 4, 14),
    ]


def test_decision_milestones_carry_the_decision_and_its_source() -> None:
    decisions = {
        (regimen.id, m.id): m.decision
        for regimen in load_regimens().values()
        for m in regimen.milestones
        if m.decision is not None
    }
    assert set(decisions) == {
        ("alemtuzumab_sc", "week4_review"),
        ("alemtuzumab_sc", "week12_marrow"),
        ("alemtuzumab_sc", "transplant_gap"),
        ("alemtuzumab_iv", "week4_review"),
        ("alemtuzumab_iv", "week12_marrow"),
        ("alemtuzumab_iv", "transplant_gap"),
        ("rituximab_fl_weekly", "maintenance_decision"),
    }
    week4 = decisions[("alemtuzumab_sc", "week4_review")]
    assert "sign of response in the blood after 4 weeks" in week4.text
    assert "003_a1949903592dbecf.txt, Table 3" in week4.source


def test_usual_maximum_per_phase_has_a_source_and_is_not_below_the_dose() -> None:
    maxima = {
        (regimen.id, phase.id): phase.usual_max.amount
        for regimen in load_regimens().values()
        for phase in regimen.phases
        if phase.usual_max is not None
    }
    assert maxima[("inotuzumab_single", "courses")] == 1.8  # 004: 1.3 to 1.8 mg/m2
    assert maxima[("inotuzumab_weekly", "cycles")] == 0.8
    assert maxima[("alemtuzumab_sc", "treatment")] == 30
    assert maxima[("rituximab_fl_weekly", "induction")] == 375
    # The retreatment source gives no dose at all: no maximum either.
    assert not any(key[0] == "ofatumumab_retreatment" for key in maxima)


def test_every_regimen_tapers_its_checkins_to_weekly_after_treatment() -> None:
    # Issue 11, item 7: the taper ends weekly, the cadence kept while prophylaxis runs;
    # every step is sourced or marked as a care-team operating choice.
    for regimen in load_regimens().values():
        steps = regimen.checkins.after_treatment
        assert steps and steps[-1].every_days == 7, regimen.id
        for step in steps:
            assert "care-team operating choice" in step.source, regimen.id
    alemtuzumab = get_regimen("alemtuzumab_sc").checkins.after_treatment
    assert alemtuzumab[-1].until_weeks_after_last_dose == 39  # 9 months (002)
    assert "25% of baseline" in alemtuzumab[-1].source


def test_who_gives_the_premedication() -> None:
    # Issue 11, item 8: infusions in hospital get their premedication from the team;
    # s.c. alemtuzumab after the first injection is taken at home.
    givers = {r.id: r.premedication.given_by for r in load_regimens().values() if r.premedication}
    assert givers == {
        "alemtuzumab_iv": "care_team",
        "alemtuzumab_sc": "care_team_in_hospital",
        "rituximab_cll_chemo": "care_team",
        "rituximab_fl_maintenance": "care_team",
        "rituximab_fl_weekly": "care_team",
    }
    sc = get_regimen("alemtuzumab_sc").premedication
    assert sc is not None and sc.given_by_team(True) and not sc.given_by_team(False)
    for regimen_id in givers:
        source = get_regimen(regimen_id).premedication.given_by_source  # type: ignore[union-attr]
        assert "care-team setting" in source and "003" in source


def test_every_regimen_watches_the_first_week() -> None:
    for regimen in load_regimens().values():
        assert regimen.risk_windows_on_day(1) and regimen.risk_windows_on_day(7)


# --------------------------------------------------------------------------- options
def test_resolve_options_fills_defaults_and_normalises_weekdays() -> None:
    r = get_regimen("alemtuzumab_sc")
    assert r.resolve_options({}) == {"escalation": False, "weekdays": (0, 2, 4)}
    assert r.resolve_options({"weekdays": ["Sat", "tue", 3]})["weekdays"] == (1, 3, 5)


@pytest.mark.parametrize(
    ("regimen_id", "options", "message"),
    [
        ("alemtuzumab_sc", {"colour": "red"}, "unknown option 'colour'"),
        ("alemtuzumab_sc", {"weekdays": ["mon", "thu"]}, "option 'weekdays' must name exactly 3"),
        ("alemtuzumab_sc", {"weekdays": ["mon"]}, "option 'weekdays' must name exactly 3"),
        (
            "alemtuzumab_sc",
            {"weekdays": ["mon", "mon", "fri"]},
            "option 'weekdays' must name exactly 3",
        ),
        ("alemtuzumab_sc", {"weekdays": ["mon", "funday", "fri"]}, "'funday' is not a weekday"),
        ("alemtuzumab_sc", {"weekdays": "mon,wed,fri"}, "option 'weekdays' must be a list"),
        ("alemtuzumab_sc", {"escalation": "yes"}, "option 'escalation' must be true or false"),
        (
            "rituximab_fl_maintenance",
            {"interval_months": 4},
            "option 'interval_months' must be one of",
        ),
        ("inotuzumab_single", {"interval_days": 28}, "option 'dose_mg_m2' is required"),
        (
            "inotuzumab_single",
            {"dose_mg_m2": 2.0},
            "option 'dose_mg_m2' must be between 1.3 and 1.8",
        ),
        ("inotuzumab_weekly", {"cycles": 0}, "option 'cycles' must be between 1 and 6"),
        ("inotuzumab_weekly", {"cycles": 2.5}, "option 'cycles' must be a whole number"),
    ],
)
def test_resolve_options_rejects_bad_values(regimen_id: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        get_regimen(regimen_id).resolve_options(options)


# --------------------------------------------------------------------------- broken files
@pytest.fixture
def broken(tmp_path: Path):
    """Copy alemtuzumab_sc.toml into tmp_path and return an editor: (old, new) -> path."""
    target = tmp_path / "alemtuzumab_sc.toml"
    shutil.copy(DEFAULT_DIRECTORY / "alemtuzumab_sc.toml", target)

    def edit(old: str, new: str) -> Path:
        text = target.read_text()
        assert old in text, old
        target.write_text(text.replace(old, new, 1))
        return tmp_path

    return edit


def test_unchanged_copy_loads(broken) -> None:
    regimens = load_regimens(broken("name =", "name ="))
    assert list(regimens) == ["alemtuzumab_sc"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # missing field
        ('drug = "alemtuzumab"\n', "", "alemtuzumab_sc.toml: drug: Field required"),
        # wrong type
        (
            "count = 36  # 12 weeks",
            'count = "36"',
            "alemtuzumab_sc.toml: phases[1].count: Input should be a valid integer",
        ),
        # bad weekday in a phase
        (
            'weekdays = { option = "weekdays" }',
            'weekdays = ["mon", "funday", "fri"]',
            "alemtuzumab_sc.toml: phases[1].weekdays: [1]: 'funday' is not a weekday",
        ),
        # bad weekday in an option default
        (
            'default = ["mon", "wed", "fri"]',
            'default = ["mon", "wed", "fry"]',
            "alemtuzumab_sc.toml: options.weekdays.default[2]: 'fry' is not a weekday",
        ),
        # twice a week as the default of a three-times-a-week option
        (
            'default = ["mon", "wed", "fri"]',
            'default = ["mon", "thu"]',
            "alemtuzumab_sc.toml: options.weekdays: default must name exactly 3",
        ),
        # unknown key at the top and inside a table
        (
            'route = "sc"',
            'route = "sc"\ncolour = "red"',
            "alemtuzumab_sc.toml: colour: Extra inputs are not permitted",
        ),
        (
            "to_day = 14",
            "to_day = 14\nuntil = 15",
            "alemtuzumab_sc.toml: supportive[0].until: Extra inputs are not permitted",
        ),
        # a value outside its literal set
        (
            'route = "sc"',
            'route = "im"',
            "alemtuzumab_sc.toml: route: Input should be 'sc', 'iv' or 'oral'",
        ),
        (
            'unit = "mg"\nextendable',
            'unit = "g"\nextendable',
            "alemtuzumab_sc.toml: phases[1].unit: Input should be 'mg' or 'mg/m2'",
        ),
        # an unknown pattern
        (
            'pattern = "weekdays"',
            'pattern = "fortnightly"',
            "alemtuzumab_sc.toml: phases[1]: Input tag 'fortnightly' found using 'pattern' does not match",
        ),
        # an option reference to nothing
        (
            'weekdays = { option = "weekdays" }',
            'weekdays = { option = "days" }',
            "alemtuzumab_sc.toml: phases[1].weekdays: refers to unknown option 'days'",
        ),
        # the first week must be a risk window
        (
            "start_day = 1\nend_day = 7",
            "start_day = 2\nend_day = 7",
            "alemtuzumab_sc.toml: risk_windows: one window must cover the first week",
        ),
        # a window given in days and in weeks
        (
            "start_day = 14\nend_day = 58",
            "start_day = 14\nend_day = 58\nstart_week = 3",
            "alemtuzumab_sc.toml: risk_windows[3]: give start_day and end_day, or start_week and end_week",
        ),
        # a negative tail after the last dose
        (
            "through_last_dose_plus_days = 7",
            "through_last_dose_plus_days = -7",
            "alemtuzumab_sc.toml: risk_windows[3].through_last_dose_plus_days: Input should be greater than or equal to 0",
        ),
        # the check-in taper: one cadence per step, weeks increasing, old keys gone
        (
            "times_per_week = 2\n",
            "times_per_week = 2\nevery_days = 3\n",
            "alemtuzumab_sc.toml: checkins.after_treatment[0]: give exactly one of every_days or times_per_week",
        ),
        (
            "times_per_week = 2\n",
            "",
            "alemtuzumab_sc.toml: checkins.after_treatment[0]: give exactly one of every_days or times_per_week",
        ),
        (
            "times_per_week = 2\n",
            "times_per_week = 8\n",
            "alemtuzumab_sc.toml: checkins.after_treatment[0].times_per_week: Input should be less than or equal to 7",
        ),
        (
            "until_weeks_after_last_dose = 39",
            "until_weeks_after_last_dose = 8",
            "alemtuzumab_sc.toml: checkins.after_treatment: until_weeks_after_last_dose must increase from step to step, got [8, 8]",
        ),
        (
            "on_dose_days = false\n",
            "on_dose_days = false\nafter_last_dose_weeks = 8\n",
            "alemtuzumab_sc.toml: checkins.after_last_dose_weeks: Extra inputs are not permitted",
        ),
        # the team cannot give the premedication of a dose at home
        (
            'given_by = "care_team_in_hospital"',
            'given_by = "care_team"',
            "alemtuzumab_sc.toml: premedication.given_by: 'care_team' needs every dose in hospital",
        ),
        (
            'given_by = "care_team_in_hospital"',
            'given_by = "nurse"',
            "alemtuzumab_sc.toml: premedication.given_by: Input should be 'care_team', 'patient' or 'care_team_in_hospital'",
        ),
        # the id is the file name
        (
            'name = "Alemtuzumab',
            'id = "other"\nname = "Alemtuzumab',
            "alemtuzumab_sc.toml: id: the id is the file name",
        ),
        # a usual maximum below the phase's own dose
        (
            'amount = 30\nsource = "003_a1949903592dbecf.txt, Table 2 (the dose is 30 mg',
            'amount = 20\nsource = "003_a1949903592dbecf.txt, Table 2 (the dose is 30 mg',
            "alemtuzumab_sc.toml: phases[0].usual_max: 20 is below the phase's own dose 30",
        ),
        # every prophylaxis says whether it is mandatory, strictly true or false...
        (
            "mandatory = true  # every patient",
            "# every patient",
            "alemtuzumab_sc.toml: prophylaxis[0].mandatory: Field required",
        ),
        (
            "mandatory = true  # every patient",
            'mandatory = "yes"  # every patient',
            "alemtuzumab_sc.toml: prophylaxis[0].mandatory: Input should be a valid boolean",
        ),
        # ...and a mandatory one names the passage that makes it so
        (
            'mandatory_source = "003_a1949903592dbecf.txt, Patient management issues (cotrimoxazole',
            'mandatory_note = "003_a1949903592dbecf.txt, Patient management issues (cotrimoxazole',
            "alemtuzumab_sc.toml: prophylaxis[0].mandatory_note: Extra inputs are not permitted",
        ),
        (
            'mandatory_source = "003_a1949903592dbecf.txt, Patient management issues (cotrimoxazole',
            '# mandatory_source = "003_a1949903592dbecf.txt, Patient management issues (cotrimoxazole',
            "alemtuzumab_sc.toml: prophylaxis[0]: a mandatory prophylaxis needs mandatory_source",
        ),
        (
            "mandatory = true  # every patient",
            "mandatory = false  # every patient",
            "alemtuzumab_sc.toml: prophylaxis[0]: mandatory_source is only for mandatory = true",
        ),
        # not TOML at all
        ('drug = "alemtuzumab"', "drug = alemtuzumab", "alemtuzumab_sc.toml: invalid TOML"),
    ],
)
def test_broken_file_error_names_file_and_field(broken, old: str, new: str, message: str) -> None:
    directory = broken(old, new)
    with pytest.raises(RegimenError) as info:
        load_regimens(directory)
    assert message in str(info.value)


def test_missing_directory_is_a_regimen_error(tmp_path: Path) -> None:
    with pytest.raises(RegimenError, match="not found"):
        load_regimens(tmp_path / "nowhere")
