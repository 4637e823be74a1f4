"""SMS templates: every key in every language, segment budgets, the urgent advice quoted."""

from __future__ import annotations

import re
import string

import pytest

from reminders.core import templates
from reminders.core.clinical_rules import (
    LANGUAGES,
    clinical_rules,
    emergency_fallback,
    urgent_advice,
)
from reminders.core.parser import SYMPTOM_MENU, Expecting, Intent, parse_reply
from reminders.core.regions import get_region, temperature_text
from reminders.core.templates import (
    AUTO_PLACEHOLDERS,
    DRUG_PLACEHOLDERS,
    TEMPLATE_KEYS,
    SegmentInfo,
    TemplateError,
    format_temperature,
    get_template,
    gsm_incompatible,
    render,
    resolve_language,
    segments,
    template_placeholders,
    to_gsm7,
)
from reminders.rendering import patient_context, render_for

TEAM_PHONE = "+32 2 555 01 23"
DRUG = "alemtuzumab"
PREMEDICATION = "paracetamol and cetirizine"
MEDICINE = "cotrimoxazole"

# Realistic, long-ish values. Longer ones can push a text over a segment: see the
# budget test below and the report of segment counts.
VALUES: dict[str, dict[str, str]] = {
    lang: {
        "first_name": "Marie-Christine",
        "team_name": "Haematology Day Unit",
        "team_phone": TEAM_PHONE,
        "drug": DRUG,
        "medicine": MEDICINE,
        "premedication": PREMEDICATION,
        "lab": {"en": "CMV", "fr": "test CMV", "nl": "CMV-test"}[lang],
        "time": "08:30",
        "date": {"en": "Mon 14 Oct", "fr": "lun. 14 oct.", "nl": "ma 14 okt"}[lang],
        "place": "AZ Sint-Jan lab, route 42",
        "done": "18",
        "total": "36",
        # From the regimen data (003, Table 2: at least 2 hours of observation).
        "observation_hours": "2",
        "recheck_minutes": str(clinical_rules().fever.recheck_after_minutes),
        "temperature": temperature_text(37.6, lang),
        "fever": temperature_text(clinical_rules().fever.threshold_c, lang),
        "sent_time": "08:30",
        "patient_ref": "P-000123",
        "reason": "Temperature 38.4 C; cough or short of breath; CMV test advised",
        "minutes": "15",
        "code": "3VR",
        # The two answers unknown_sender_reply_bilingual puts one after the other.
        "in_first_language": render("unknown_sender_reply", "fr", region=get_region("BE")),
        "in_second_language": render("unknown_sender_reply", "nl", region=get_region("BE")),
    }
    for lang in LANGUAGES
}

BRIEF_KEYS = {
    "welcome", "help_reply", "opted_out_confirmation", "opted_in_confirmation",
    "dose_reminder_evening_before", "dose_reminder_morning", "first_dose_in_hospital",
    "premedication_reminder", "pill_reminder", "pill_taken_ack", "lab_reminder", "milestone",
    "checkin_temperature", "checkin_symptoms", "checkin_symptoms_with_jaundice",
    "reask_temperature", "recheck_temperature", "fever_urgent", "fever_urgent_cmv",
    "red_flag_urgent", "symptoms_ack", "all_clear_thanks", "checkin_resend", "free_text_ack",
    "oncall_alert", "oncall_reescalation", "unknown_reply_help",
}  # fmt: skip
DISEASE_WORDS = re.compile(
    r"(?i:leuk|leuc|lymphom|lymfoom|cancer|kanker|tumou?r|chemo)|\bCLL\b|\bALL\b"
)
ALL_RENDERS = [
    pytest.param(key, lang, discreet, id=f"{lang}-{key}{'-discreet' if discreet else ''}")
    for lang in LANGUAGES
    for key in TEMPLATE_KEYS
    for discreet in (False, True)
]


def _segments_report() -> dict[tuple[str, str, bool], SegmentInfo]:
    return {
        (lang, key, discreet): segments(render(key, lang, discreet=discreet, **VALUES[lang]))
        for lang in LANGUAGES
        for key in TEMPLATE_KEYS
        for discreet in (False, True)
    }


# --------------------------------------------------------------------------- catalogue
def test_all_keys_of_the_brief_exist():
    assert set(TEMPLATE_KEYS) >= BRIEF_KEYS
    assert len(TEMPLATE_KEYS) == len(set(TEMPLATE_KEYS))


@pytest.mark.parametrize("key", TEMPLATE_KEYS)
def test_every_key_exists_in_every_language_with_the_same_placeholders(key):
    def names(text: str | None) -> set[str]:
        return {n for _, n, _, _ in string.Formatter().parse(text or "") if n}

    en = get_template(key, "en")
    for lang in LANGUAGES:
        tpl = get_template(key, lang)
        assert tpl.language == lang
        assert names(tpl.text) == names(en.text), lang
        assert names(tpl.discreet) == names(en.discreet), lang
        assert (tpl.discreet is None) == (en.discreet is None)
        assert tpl.audience == en.audience


def test_template_placeholders_are_what_the_caller_passes():
    assert template_placeholders("fever_urgent") == {"team_phone"}
    assert template_placeholders("welcome") == {"first_name", "team_name", "drug"}
    assert template_placeholders("welcome", discreet=True) == {"first_name", "team_name"}
    assert template_placeholders("pill_taken_ack") == frozenset()
    for key in TEMPLATE_KEYS:
        assert not template_placeholders(key) & AUTO_PLACEHOLDERS


def test_templates_naming_a_drug_have_a_discreet_variant_without_it():
    for key in TEMPLATE_KEYS:
        if template_placeholders(key) & DRUG_PLACEHOLDERS:
            assert get_template(key).discreet is not None, key
            assert not template_placeholders(key, discreet=True) & DRUG_PLACEHOLDERS, key


# --------------------------------------------------------------------------- rendering
@pytest.mark.parametrize(("key", "lang", "discreet"), ALL_RENDERS)
def test_render_every_template_fits_its_budget(key, lang, discreet, record_property):
    text = render(key, lang, discreet=discreet, **VALUES[lang])
    info = segments(text)
    record_property("segments", f"{lang} {key} discreet={discreet}: {info}")
    assert "{" not in text and "}" not in text
    assert info.encoding == "GSM-7", gsm_incompatible(text)
    # One segment, except the documented exceptions (max_segments and why in the file);
    # tests/reminders/test_sms_segments.py counts them with the longest values.
    assert info.segments <= get_template(key, lang).max_segments, (info, text)


@pytest.mark.parametrize(("key", "lang", "discreet"), ALL_RENDERS)
def test_discreet_mode_names_no_drug_and_no_template_names_a_disease(key, lang, discreet):
    text = render(key, lang, discreet=discreet, **VALUES[lang])
    assert not DISEASE_WORDS.search(text), text
    if discreet and get_template(key, lang).audience == "patient":
        for name in (DRUG, MEDICINE, PREMEDICATION, "CMV"):
            assert name.casefold() not in text.casefold(), (name, text)


# The documented exceptions: a budget over one segment, each with its why.
TWO_SEGMENTS = {
    ("en", "oncall_alert"), ("fr", "oncall_alert"), ("nl", "oncall_alert"),
    ("en", "oncall_alert_family"), ("fr", "oncall_alert_family"), ("nl", "oncall_alert_family"),
    ("en", "oncall_reescalation"), ("fr", "oncall_reescalation"), ("nl", "oncall_reescalation"),
    ("fr", "fever_urgent_cmv"), ("nl", "fever_urgent_cmv"), ("fr", "fever_urgent"),
    ("en", "unknown_sender_reply_bilingual"), ("fr", "unknown_sender_reply_bilingual"),
    ("nl", "unknown_sender_reply_bilingual"),
}  # fmt: skip


@pytest.mark.parametrize(("key", "lang", "discreet"), ALL_RENDERS)
def test_only_the_listed_texts_have_a_second_segment_budget(key, lang, discreet):
    template = get_template(key, lang)
    assert template.max_segments == (2 if (lang, key) in TWO_SEGMENTS else 1)
    assert (template.why is not None) == ((lang, key) in TWO_SEGMENTS)


def test_english_template_texts_use_only_gsm_characters():
    for key in TEMPLATE_KEYS:
        tpl = get_template(key, "en")
        for text in (tpl.text, tpl.discreet or ""):
            assert gsm_incompatible(text) == "", (key, gsm_incompatible(text))
            assert "°" not in text


def test_english_fever_urgent_fits_with_a_belgian_mobile_number():
    text = render("fever_urgent", "en", team_phone="+32 470 12 34 56")
    assert segments(text).segments == 1


def test_segment_counts_per_language(capsys):
    counts = _segments_report()
    with capsys.disabled():
        print("\nSMS segments (GSM-7 units/segments), realistic values:")
        for key in TEMPLATE_KEYS:
            cells = []
            for lang in LANGUAGES:
                info = counts[(lang, key, False)]
                cells.append(f"{lang} {info.units:3}/{info.segments}")
            print(f"  {key:32} " + "  ".join(cells))
    assert all(info.segments <= 2 for info in counts.values())


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("key", ["fever_urgent", "fever_urgent_cmv"])
@pytest.mark.parametrize("discreet", [False, True])
def test_fever_urgent_quotes_the_advice_word_for_word(lang, key, discreet):
    text = render(key, lang, discreet=discreet, team_phone=TEAM_PHONE)
    assert urgent_advice(lang) in text
    assert emergency_fallback(lang) in text
    assert TEAM_PHONE in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_red_flag_urgent_gives_the_phone_and_the_fallback(lang):
    text = render("red_flag_urgent", lang, team_phone=TEAM_PHONE)
    assert TEAM_PHONE in text
    assert emergency_fallback(lang) in text


def test_fever_urgent_cmv_mentions_cmv():
    for lang in LANGUAGES:
        assert "CMV" in render("fever_urgent_cmv", lang, team_phone=TEAM_PHONE)


def test_content_the_brief_asks_for():
    en = VALUES["en"]
    welcome = render("welcome", "en", **en)
    assert "Haematology Day Unit" in welcome and "STOP" in welcome and "HELP" in welcome
    first = render("first_dose_in_hospital", "en", **en)
    assert "hospital" in first and "2 hours" in first
    assert "TAKEN" in render("pill_reminder", "en", **en)
    assert "CMV blood test" in render("lab_reminder", "en", **en)
    assert "temperature" in render("checkin_temperature", "en", **en)
    recheck = render("recheck_temperature", "en", **en)
    assert "60 minutes" in recheck and "37.6 C" in recheck
    assert "look at" in render("symptoms_ack", "en", **en)
    assert "gone to your care team" in render("free_text_ack", "en", **en)
    alert = render("oncall_alert", "en", **en)
    assert "P-000123" in alert and "See dashboard" in alert


@pytest.mark.parametrize("key", ["oncall_alert", "oncall_alert_family", "oncall_reescalation"])
def test_clinician_messages_carry_no_patient_phone_number(key):
    assert get_template(key).audience == "clinician"
    assert not any("phone" in name for name in template_placeholders(key))
    text = render(key, "en", **VALUES["en"])
    assert not re.search(r"\+?\d[\d ]{6,}", text)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("key", ["checkin_symptoms", "checkin_symptoms_with_jaundice"])
def test_symptom_menus_match_the_parser(lang, key):
    """Each menu line "n label" is menu number n, and its label parses back to the same code."""
    text = render(key, lang)
    lines = dict(re.findall(r"^([1-8]) (.+)$", text, flags=re.MULTILINE))
    expected = 8 if key.endswith("jaundice") else 7
    assert sorted(int(n) for n in lines) == list(range(1, expected + 1))
    for number, label in lines.items():
        code = SYMPTOM_MENU[int(number)]
        assert code in parse_reply(label).symptoms, (lang, number, label)
        assert parse_reply(number, Expecting.SYMPTOMS).symptoms == {code}
    assert parse_reply("0", Expecting.SYMPTOMS).intent == Intent.NO_SYMPTOMS


@pytest.mark.parametrize(("lang", "word"), [("en", "TAKEN"), ("fr", "PRIS"), ("nl", "GENOMEN")])
def test_pill_reminder_reply_word_is_understood(lang, word):
    for discreet in (False, True):
        assert word in render("pill_reminder", lang, discreet=discreet, **VALUES[lang])
    assert parse_reply(word, Expecting.CONFIRMATION).intent == Intent.TAKEN


def test_missing_value_raises_key_error_naming_the_placeholder():
    with pytest.raises(KeyError, match="team_phone"):
        render("fever_urgent", "en")
    with pytest.raises(KeyError, match="drug"):
        render("welcome", "fr", first_name="Marie", team_name="HDJ")


def test_extra_values_are_ignored_and_discreet_mode_needs_no_drug():
    text = render("welcome", "en", discreet=True, first_name="Ann", team_name="Day Unit")
    assert "Ann" in text
    assert render("pill_taken_ack", "en", drug=DRUG) == get_template("pill_taken_ack").text


def test_advice_cannot_be_overridden_by_the_caller():
    with pytest.raises(ValueError, match=r"advice\.toml"):
        render("fever_urgent", "en", team_phone=TEAM_PHONE, urgent_advice="call later")


def test_unknown_key_raises():
    with pytest.raises(KeyError, match="nope"):
        render("nope", "en")


@pytest.mark.parametrize(
    ("given", "resolved"),
    [("en", "en"), ("fr", "fr"), ("NL", "nl"), ("fr-BE", "fr"), ("nl_BE", "nl"),
     ("de", "en"), ("", "en"), (None, "en"), ("xx-YY", "en")],
)  # fmt: skip
def test_language_resolution_falls_back_to_english(given, resolved):
    assert resolve_language(given) == resolved


def test_unknown_language_renders_english():
    assert render("pill_taken_ack", "de") == render("pill_taken_ack", "en")
    assert urgent_advice("en") in render("fever_urgent", "pt-BR", team_phone=TEAM_PHONE)


def test_format_temperature():
    assert format_temperature(37.6, "en") == "37.6"
    assert format_temperature(37.6, "fr") == "37,6"
    assert format_temperature(38, "nl-BE") == "38,0"
    assert format_temperature(37.95, "en") == "38.0"


# --------------------------------------------------------------------------- segments()
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SegmentInfo("GSM-7", 0, 0)),
        ("Hello", SegmentInfo("GSM-7", 5, 1)),
        ("a" * 160, SegmentInfo("GSM-7", 160, 1)),
        ("a" * 161, SegmentInfo("GSM-7", 161, 2)),
        ("a" * 306, SegmentInfo("GSM-7", 306, 2)),
        ("a" * 307, SegmentInfo("GSM-7", 307, 3)),
        ("€", SegmentInfo("GSM-7", 2, 1)),  # extension table: ESC + char
        ("[]{}~^|\\€", SegmentInfo("GSM-7", 18, 1)),
        ("a" * 158 + "€", SegmentInfo("GSM-7", 160, 1)),
        ("a" * 159 + "€", SegmentInfo("GSM-7", 161, 2)),
        # An escape pair is never split: 152 + (2) does not fit 153, so it moves on.
        ("a" * 152 + "€" + "a" * 152, SegmentInfo("GSM-7", 306, 3)),
        ("é è à ù ì ò Ç É Ä ß £ ¥ § ¿ ¡ Ø å Δ Ω", SegmentInfo("GSM-7", 37, 1)),
        ("Line\nbreak", SegmentInfo("GSM-7", 10, 1)),
        ("38.0 °C", SegmentInfo("UCS-2", 7, 1)),  # the degree sign is not GSM
        ("ça", SegmentInfo("UCS-2", 2, 1)),  # lower-case c cedilla is not GSM (capital is)
        ("hôpital", SegmentInfo("UCS-2", 7, 1)),
        ("patiënt", SegmentInfo("UCS-2", 7, 1)),
        ("it\u2019s", SegmentInfo("UCS-2", 4, 1)),  # typographic apostrophe
        ("ê" * 70, SegmentInfo("UCS-2", 70, 1)),
        ("ê" * 71, SegmentInfo("UCS-2", 71, 2)),
        ("ê" * 134, SegmentInfo("UCS-2", 134, 2)),
        ("ê" * 135, SegmentInfo("UCS-2", 135, 3)),
        ("👍", SegmentInfo("UCS-2", 2, 1)),  # a surrogate pair
        ("ê" * 66 + "👍" + "ê" * 10, SegmentInfo("UCS-2", 78, 2)),
        ("ê" * 66 + "👍" + "ê" * 67, SegmentInfo("UCS-2", 135, 3)),  # pair not split
    ],
)
def test_segments(text, expected):
    assert segments(text) == expected


def test_gsm_incompatible_lists_the_offending_characters():
    assert gsm_incompatible("38.0 °C and ça") == "°ç"
    assert gsm_incompatible("plain text €") == ""


# --------------------------------------------------------------------------- validation
def test_invalid_message_files_are_rejected(tmp_path, monkeypatch):
    for lang in LANGUAGES:
        text = (templates._MESSAGES / f"{lang}.toml").read_text(encoding="utf-8")
        if lang == "nl":
            # A discreet variant that names the drug must be refused.
            text = text.replace(
                'discreet = "Tijd voor uw tabletten ({time}).',
                'discreet = "Tijd voor uw {medicine} ({time}).',
            )
        (tmp_path / f"{lang}.toml").write_text(text, encoding="utf-8")
    monkeypatch.setattr(templates, "_MESSAGES", tmp_path)
    templates._catalogue.cache_clear()
    try:
        with pytest.raises(TemplateError, match=r"nl\.toml \[pill_reminder\]"):
            render("pill_reminder", "nl", time="08:30")
    finally:
        templates._catalogue.cache_clear()


def test_placeholder_syntax_is_restricted():
    with pytest.raises(TemplateError, match="plain"):
        templates._placeholders("{team.__class__}", "test")
    with pytest.raises(TemplateError, match="plain"):
        templates._placeholders("{0}", "test")
    with pytest.raises(TemplateError, match="plain"):
        templates._placeholders("{name!r}", "test")


# Issue 11, item 8: a dose in hospital that is not the first says neither "first" nor an
# observation time; premedication the team gives is never one to take.
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("discreet", [False, True])
def test_hospital_dose_and_team_premedication_texts(lang, discreet):
    values = {**VALUES[lang], "drug": "inotuzumab ozogamicin"}
    dose = render("dose_in_hospital_evening_before", lang, discreet=discreet, **values)
    first_words = {"en": "first", "fr": "premi", "nl": "eerste"}[lang]
    assert first_words not in dose.lower() and "2" not in dose.replace(values["team_phone"], "")
    assert {"en": "hospital", "fr": "hospitalier", "nl": "ziekenhuis"}[lang] in dose
    premed = render("premedication_by_team", lang, discreet=discreet, **VALUES[lang])
    take = {"en": "take your", "fr": "prenez", "nl": "neem "}[lang]
    assert take not in premed.lower()
    assert {"en": "Nothing to take", "fr": "Rien à prendre", "nl": "niets in te nemen"}[
        lang
    ] in premed


@pytest.mark.parametrize("key", TEMPLATE_KEYS)
def test_french_never_writes_de_before_a_drug_name(key):
    # "de alemtuzumab" is wrong (d'alemtuzumab); the templates avoid "de {drug}".
    for text in (get_template(key, "fr").text, get_template(key, "fr").discreet or ""):
        assert not re.search(r"\b(de|du) \{(drug|medicine|premedication)\}", text), text


# --------------------------------------------------------------------------- regions
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    ("code", "number", "fever"),
    [("BE", "112", {"en": "38.0 C", "fr": "38,0 C", "nl": "38,0 C"}), ("US", "911", None)],
)
def test_safety_text_follows_the_patients_region(lang, code, number, fever):
    """112 and Celsius only for Belgium; 911 and Fahrenheit first for the United States."""
    region = get_region(code)
    values = VALUES[lang] | {
        "temperature": temperature_text(37.6, lang, region),
        "fever": temperature_text(clinical_rules().fever.threshold_c, lang, region),
    }
    urgent = render("fever_urgent", lang, region=region, **values)
    assert urgent.endswith(emergency_fallback(lang, region)) and number in urgent
    expected = render("expected_temperature", lang, region=region, **values)
    if code == "BE":
        assert fever[lang] in urgent and " F" not in urgent + expected
    else:
        decimal = "," if lang != "en" else "."
        assert f"100{decimal}4 F (38{decimal}0 C)" in urgent
        assert f"99{decimal}7 F (37{decimal}6 C)" in expected
    for key in TEMPLATE_KEYS:
        text = render(key, lang, region=region, **values)
        assert segments(text).segments <= max(2, get_template(key, lang).max_segments), (key, text)


# --------------------------------------------------------------------------- names in GSM-7
@pytest.mark.parametrize(
    ("name", "spelt"),
    [
        ("François", "Francois"),
        ("Loïc", "Loic"),
        ("Noël", "Noel"),
        ("Zoë", "Zoe"),
        ("Hélène", "Hélène"),  # é and è are GSM-7: kept
        ("Łukasz", "Lukasz"),
        ("Hématologie – Hôpital d’Enfants", "Hématologie - Hopital d'Enfants"),
        ("Жанна", "Жанна"),  # no GSM-7 spelling: the name stays the person's
    ],
)
def test_names_are_spelt_in_gsm7_where_they_can_be(name, spelt):
    assert to_gsm7(name) == spelt


def test_an_accented_first_name_keeps_the_welcome_in_one_gsm7_segment(
    session, make_user, make_patient
):
    """The stored name is unchanged; the SMS spells it in GSM-7 (issue 15, item 4)."""
    user, _ = make_user()
    patient = make_patient(
        user.team_id, display_name="Loïc-François Vanden Bossche-Noël", language="fr"
    )
    text = render_for(patient_context(session, patient), "welcome")
    assert text.startswith("Bonjour Loic-Francois,") and segments(text).encoding == "GSM-7"
    assert patient.display_name == "Loïc-François Vanden Bossche-Noël"
