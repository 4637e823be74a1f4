"""Every SMS template, in every language, with the real regimen library and the longest values.

The planner and the planning pass produce the reminders of every regimen of the library
(whole courses, every option, every prophylaxis drug and alternative); the replies, the
urgent advice and the on-call pages get the longest values their callers pass. Each text
is counted with a GSM-7 table written here from 3GPP TS 23.038 (not the app's), and must
fit its template's budget: one segment, or the documented exception's ``max_segments``
(``messages/*.toml``, with its ``why``). Issue 15, item 4.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from itertools import product

import pytest

from reminders.core.clinical_rules import LANGUAGES, clinical_rules
from reminders.core.oncall_text import alert_code, initials, kind_label, oncall_words
from reminders.core.regimens import load_regimens
from reminders.core.regions import get_region, temperature_text
from reminders.core.templates import (
    TEAM_NAME_SMS_LENGTH,
    TEMPLATE_KEYS,
    get_template,
    render,
    segments,
    team_name_for_sms,
)
from reminders.data.models import MAX_ID, Patient, Plan, ProphylaxisCourse, Team
from reminders.planning import planned_messages_for_patient
from reminders.rendering import (
    PatientContext,
    drug_name,
    premedication_text,
    render_for,
    short_name,
    template_values,
)

# --------------------------------------------------------------------------- 3GPP TS 23.038
# The GSM 7-bit default alphabet, code points 0x00 to 0x7F in order (6.2.1); 0x1B is the
# escape to the extension table, never a character of a text.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# The default alphabet extension table (6.2.1.1): sent as ESC + code, two septets each.
GSM7_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
GSM7_SEPTETS = {ch: 1 for ch in GSM7_BASIC if ch != "\x1b"} | {
    ch: 2 for ch in GSM7_EXTENSION.values()
}
# One part: 160 septets or 70 UCS-2 units; a concatenated part loses 7 septets (6 octets)
# or 3 UCS-2 units to its user data header (3GPP TS 23.040, 9.2.3.24.1): 153 and 67.
LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def count_segments(text: str) -> tuple[str, int]:
    """(encoding, parts) of an SMS body; an escape pair or a surrogate pair is never split."""
    if all(ch in GSM7_SEPTETS for ch in text):
        encoding, sizes = "GSM-7", [GSM7_SEPTETS[ch] for ch in text]
    else:
        encoding, sizes = "UCS-2", [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    single, multi = LIMITS[encoding]
    if sum(sizes) <= single:
        return encoding, 1 if sizes else 0
    parts, used = 1, 0
    for size in sizes:
        if used + size > multi:
            parts, used = parts + 1, 0
        used += size
    return encoding, parts


def test_the_team_names_are_the_longest_the_app_stores_and_quotes():
    assert len(LONG_TEAM_NAME) == len(FULL_SMS_TEAM_NAME) == TEAM_NAME_MAX == 120
    assert len(team_name_for_sms(FULL_SMS_TEAM_NAME)) == TEAM_NAME_SMS_LENGTH


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("Service d'hématologie — Cliniques universitaires Saint-Luc", "Service d'hématologie"),
        ("Hématologie clinique / Cliniques universitaires", "Hématologie clinique"),
        ("Dienst Hematologie & Stamceltransplantatie", "Dienst Hematologie"),
        ("Hématologie (Saint-Luc) Bruxelles", "Hématologie (Saint-Luc)"),
        ("AZ Sint-Jan Hematologie", "AZ Sint-Jan Hematologie"),
    ],
)
def test_a_cut_team_name_ends_on_a_word(name: str, quoted: str) -> None:
    assert team_name_for_sms(name) == quoted


def test_the_independent_table_counts_like_the_standard():
    assert len(GSM7_BASIC) == 128 and len(set(GSM7_BASIC)) == 128
    assert count_segments("a" * 160) == ("GSM-7", 1)
    assert count_segments("a" * 161) == ("GSM-7", 2)
    assert count_segments("a" * 306) == ("GSM-7", 2) and count_segments("a" * 307)[1] == 3
    assert count_segments("€" * 80) == ("GSM-7", 1) and count_segments("€" * 81)[1] == 2
    assert count_segments("a" * 152 + "€") == ("GSM-7", 1)  # 154 septets: one part
    assert count_segments("a" * 159 + "€") == ("GSM-7", 2)  # the escape pair is not split
    assert count_segments("ç" * 70) == ("UCS-2", 1) and count_segments("ç" * 71)[1] == 2
    assert count_segments("Zoë " + "a" * 130) == ("UCS-2", 2)
    assert count_segments("Çà") == ("GSM-7", 1)  # capital C cedilla is 0x09; small ç is not


# --------------------------------------------------------------------------- the values
NAMES = (
    "Marie-Thérèse Vandenbroucke-Delacroix",
    "Zoë Noël",
    "Loïc-François Dubois",
    "Marie-Bernadette Noël",  # a long first name: the SMS quote the first word
)
TEAM_NAME_MAX = Team.__table__.c.name.type.length  # the longest name the app stores
LONG_TEAM_NAME = (
    "Service d'hématologie et d'oncologie – Hôpital de jour Loïc-Noël, Cliniques "
    "universitaires Saint-Luc, Bruxelles-Woluwe, Belgique"
)[:TEAM_NAME_MAX]
# Its first words fill the most of a name an SMS quotes (TEAM_NAME_SMS_LENGTH).
FULL_SMS_TEAM_NAME = (
    "AZ Groeninge Hematologie Kortrijk – Centre hospitalier universitaire Loïc-Noël, site de "
    "Woluwe-Saint-Lambert, Bruxelles, Belgique, hôpital de jour"
)[:TEAM_NAME_MAX]
TEAM_NAMES = (LONG_TEAM_NAME, FULL_SMS_TEAM_NAME, "Hématologie Saint-Luc")
# Team numbers as patients read them (display_phone): a Belgian mobile, a United States
# number, and none (the SMS then name the region's emergency number, as such, in its place).
TEAM_PHONES = ("+32470123456", "+16502530000", None)
HOSPITAL_REF_MAX = Patient.__table__.c.hospital_ref.type.length
REGIONS = ("BE", "US")
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def contexts(language: str, plan: Plan | None):
    """A context per name, team name and phone: the patient's SMS in ``language``."""
    for display_name, team_name, phone, region, discreet in product(
        NAMES, TEAM_NAMES, TEAM_PHONES, REGIONS, (False, True)
    ):
        patient = Patient(
            id=MAX_ID,
            team_id=1,
            display_name=display_name,
            phone="+32470000000",
            language=language,
            region=region,
            timezone="Europe/Brussels",
            quiet_start=time(22),
            quiet_end=time(7),
            dose_time=time(9),
            checkin_time=time(18),
            pill_times=["08:00", "20:00"],
            discreet=discreet,
        )
        team = Team(id=1, name=team_name, care_phone=phone)
        yield PatientContext(patient, team, drug_name(plan), plan)


def option_sets(regimen) -> list[dict]:
    """The options a care team must choose at their largest (the most doses, the highest
    totals), then each yes/no option turned the other way."""
    chosen = {}
    for name, option in regimen.options.items():
        if option.type in ("int", "number") and option.default is None:
            chosen[name] = option.max
        elif option.type == "choice" and option.default is None:
            chosen[name] = option.choices[-1]
    sets = [chosen]
    for name, option in regimen.options.items():
        if option.type == "bool":
            sets.append(chosen | {name: not option.default})
    return sets


def planned_messages(regimen) -> list:
    """The planning pass's messages of whole courses of ``regimen`` (one per distinct text)."""
    start = date(2026, 3, 2)
    base = next(contexts("en", None))
    names = {entry.drug for entry in regimen.prophylaxis}
    names |= {alt for entry in regimen.prophylaxis for alt in entry.alternatives}
    # Hand-entered courses: the spellings a care team types, as the fixtures do.
    names |= {"cotrimoxazole", "acyclovir", "valacyclovir"}
    courses = [
        ProphylaxisCourse(
            id=n,
            patient_id=base.patient.id,
            drug=drug,
            dose_text="960 mg",
            times=["08:00"],
            start_date=start,
            status="active",
            created_at=NOW,
        )
        for n, drug in enumerate(sorted(names), start=1)
    ]
    distinct = {}
    for n, options in enumerate(option_sets(regimen), start=1):
        plan = Plan(
            id=n,
            patient_id=base.patient.id,
            regimen_id=regimen.id,
            start_date=start,
            options=options,
            extension_weeks=regimen.extension.max_extra_weeks if regimen.extension else 0,
            status="active",
            created_at=NOW,
        )
        context = dataclasses.replace(base, plan=plan, drug=drug_name(plan))
        in_languages = [next(contexts(lang, plan)) for lang in LANGUAGES]
        for planned in planned_messages_for_patient(
            context, [plan], {}, {}, courses if n == 1 else [], NOW, timedelta(days=3 * 365)
        ):
            # One message per template and values: the same text on another day adds nothing.
            values = [template_values(c, planned.message.event) for c in in_languages]
            key = (
                planned.message.template,
                repr(
                    [
                        sorted((k, x) for k, x in v.items() if k not in ("time", "date"))
                        for v in values
                    ]
                ),
            )
            distinct.setdefault(key, planned)
    return list(distinct.values())


def reply_values(language: str, region_code: str) -> list[dict]:
    """The values the conversation and the follow-ups pass, longest first."""
    region = get_region(region_code)
    fever = clinical_rules().fever
    return [
        {
            "temperature": temperature_text(reading, language, region),
            "fever": temperature_text(fever.threshold_c, language, region),
            "recheck_minutes": fever.recheck_after_minutes,
            "sent_time": "18:00",
            # No milestone of the library is a plain one (all are care-team decisions):
            # the most doses a course of the library has.
            "done": 56,
            "total": 57,
            # An unknown Belgian number's answer in French, then Dutch (the only country
            # of reminders.core.text_language.COUNTRY_LANGUAGES with two).
            "in_first_language": render("unknown_sender_reply", "fr", region=region),
            "in_second_language": render("unknown_sender_reply", "nl", region=region),
        }
        for reading in (37.9, 41.2)
    ]


def page_values(language: str) -> list[dict]:
    """What the escalation passes an on-call page: the longest reference and every reason."""
    kinds = oncall_words()["en"]["kind"]
    who = initials(NAMES[0])
    refs = (f"{who} ({'0123456789' * 4})"[: len(who) + 3 + HOSPITAL_REF_MAX], who)
    return [
        {
            "patient_ref": ref,
            "reason": kind_label(kind, language, temperature),
            "minutes": minutes,
            "code": alert_code(MAX_ID),
        }
        for ref, kind, temperature, minutes in product(refs, kinds, (None, 41.2), (5, 1440))
    ]


# --------------------------------------------------------------------------- the renders
@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], list[str]]:
    """(template, language) -> every distinct text rendered."""
    texts: dict[tuple[str, str], set[str]] = defaultdict(set)
    clinician = {k for k in TEMPLATE_KEYS if get_template(k).audience == "clinician"}
    for regimen in load_regimens().values():
        messages = planned_messages(regimen)
        for language in LANGUAGES:
            for context in contexts(language, messages[0].context.plan):
                for planned in messages:
                    text = dataclasses.replace(planned, context=context).row(NOW)["body"]
                    texts[planned.message.template, language].add(text)
    planned_keys = {key for key, _ in texts}
    # Every premedication of a regimen in the reminder to take it, even the one the team
    # gives (i.v. steroids): a care team may one day ask the patient to take it at home.
    for regimen in load_regimens().values():
        items = [item.text for item in regimen.premedication.items] if regimen.premedication else []
        for language in LANGUAGES:
            for context in contexts(language, None) if items else ():
                values = {
                    "time": "08:00",
                    "drug": short_name(regimen.drug, language),
                    "premedication": premedication_text(items, language),
                }
                text = render(
                    "premedication_reminder",
                    language,
                    discreet=context.patient.discreet,
                    region=get_region(context.patient.region),
                    **values,
                )
                texts["premedication_reminder", language].add(text)
    for language in LANGUAGES:
        for context in contexts(language, None):
            for values in reply_values(language, context.patient.region):
                for key in set(TEMPLATE_KEYS) - planned_keys - clinician:
                    texts[key, language].add(render_for(context, key, **values))
        for values in page_values(language):
            for key in clinician:
                texts[key, language].add(render(key, language, **values))
    return {key: sorted(found) for key, found in texts.items()}


def test_every_template_is_rendered_in_every_language(rendered):
    assert set(rendered) == {(key, lang) for key in TEMPLATE_KEYS for lang in LANGUAGES}
    for key in ("premedication_reminder", "pill_reminder", "lab_reminder", "milestone"):
        assert all(len(rendered[key, lang]) > 1 for lang in LANGUAGES), key


def test_every_sms_fits_its_budget(rendered, capsys):
    """One segment, or the documented exception's budget; always GSM-7 with these names."""
    table: dict[str, dict[str, int]] = defaultdict(dict)
    over = []
    for (key, language), texts in sorted(rendered.items()):
        budget = get_template(key, language).max_segments
        counts = [count_segments(text) for text in texts]
        assert {encoding for encoding, _ in counts} == {"GSM-7"}, (key, language)
        table[key][language] = max(parts for _, parts in counts)
        over += [
            (key, language, text) for text, (_, n) in zip(texts, counts, strict=True) if n > budget
        ]
    with capsys.disabled():
        print("\nmax segments seen (template: en fr nl; * = documented exception)")
        for key, by_language in table.items():
            cells = [
                f"{by_language[lang]}{'*' if get_template(key, lang).max_segments > 1 else ' '}"
                for lang in LANGUAGES
            ]
            print(f"  {key:34} {' '.join(cells)}")
    assert not over, sorted({(key, lang) for key, lang, _ in over}) + over[:3]


def test_every_exception_is_documented_and_needed(rendered):
    """An exception says why safety needs the words, and is still needed (else remove it)."""
    for key, language in rendered:
        template = get_template(key, language)
        if template.max_segments > 1:
            assert template.why and len(template.why) > 40, (key, language)
            most = max(count_segments(text)[1] for text in rendered[key, language])
            assert most == template.max_segments, (key, language, most)


def test_the_apps_count_agrees_with_the_standard(rendered):
    for texts in rendered.values():
        for text in texts:
            info = segments(text)
            assert (info.encoding, info.segments) == count_segments(text), text


def test_the_real_regimen_values_reach_the_sms_in_the_patients_language(rendered):
    """Short labels, international names: no "acyclovir", no "as prescribed", no English."""
    french = rendered["premedication_reminder", "fr"]
    assert any("(paracétamol et antihistaminique)" in text for text in french)
    assert any("corticoide, paracétamol" in text for text in french)  # "ï" spelt in GSM-7
    pills = {lang: " ".join(rendered["pill_reminder", lang]) for lang in LANGUAGES}
    assert "aciclovir" in pills["en"] and "valaciclovir" in pills["nl"]
    assert "acyclovir" not in " ".join(pills.values())
    assert "cotrimoxazol " in pills["nl"] or "cotrimoxazol." in pills["nl"]
    assert "allopurinol, et buvez beaucoup (" in pills["fr"] and "hydration" not in pills["fr"]
    # A label never brings its own parentheses next to the time's: "(inhalation) (08:00)".
    assert not re.search(r"\([^()]*\(|\) \(", " ".join(pills.values()))
    everything = " ".join(" ".join(texts) for texts in rendered.values())
    assert "as prescribed" not in everything and "trimethoprim" not in everything
