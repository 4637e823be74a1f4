"""Reply parser: what patients actually type, in English, French and Dutch."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reminders.core import parser
from reminders.core.clinical_rules import clinical_rules
from reminders.core.parser import (
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    SYMPTOM_CODES,
    SYMPTOM_MENU,
    Expecting,
    Intent,
    ParsedReply,
    parse_reply,
)

T = Expecting.TEMPERATURE
S = Expecting.SYMPTOMS
C = Expecting.CONFIRMATION
YN = Expecting.YES_NO


class Case(NamedTuple):
    text: str
    expecting: Expecting | None
    intent: Intent
    temperature_c: float | None = None
    symptoms: frozenset[str] = frozenset()


def case(text, expecting, intent, temperature_c=None, *symptoms):
    return pytest.param(
        Case(text, expecting, intent, temperature_c, frozenset(symptoms)),
        id=f"{text[:40]!r}-{expecting}",
    )


# fmt: off
REPLIES = [
    # --- temperatures, Celsius, as typed
    case("37.8", T, Intent.TEMPERATURE, 37.8),
    case("37,8", T, Intent.TEMPERATURE, 37.8),
    case("  37,8 ", T, Intent.TEMPERATURE, 37.8),
    case("38", T, Intent.TEMPERATURE, 38.0),
    case("38°", T, Intent.TEMPERATURE, 38.0),
    case("38 C", T, Intent.TEMPERATURE, 38.0),
    case("38c", T, Intent.TEMPERATURE, 38.0),
    case("38,5°C", T, Intent.TEMPERATURE, 38.5),
    case("38.5 °C", T, Intent.TEMPERATURE, 38.5),
    case("38.5 degrees", T, Intent.TEMPERATURE, 38.5),
    case("38.5!!", T, Intent.TEMPERATURE, 38.5),
    case("38.5.", T, Intent.TEMPERATURE, 38.5),
    case("36.6", T, Intent.TEMPERATURE, 36.6),
    case("37.2 thanks", T, Intent.TEMPERATURE, 37.2),
    case("Temp is 38.1 this morning", T, Intent.TEMPERATURE, 38.1),
    case("My temperature is 37.9", T, Intent.TEMPERATURE, 37.9),
    case("temp at 38.2", None, Intent.TEMPERATURE, 38.2),
    case("It's 37.95", T, Intent.TEMPERATURE, 38.0),  # half-up, never 37.9
    case("37.8 then 38.3", T, Intent.TEMPERATURE, 38.3),  # the highest wins
    case("38.4 at 8", T, Intent.TEMPERATURE, 38.4),
    case("38.2 at 8:30", T, Intent.TEMPERATURE, 38.2),
    case("38", None, Intent.TEMPERATURE, 38.0),
    case("37.8", None, Intent.TEMPERATURE, 37.8),
    case("37.8", S, Intent.TEMPERATURE, 37.8),  # a temperature even in the menu
    case("38", S, Intent.TEMPERATURE, 38.0),
    case("37.4", C, Intent.TEMPERATURE, 37.4),
    # --- Fahrenheit
    case("101.2F", T, Intent.TEMPERATURE, 38.4),
    case("100.4 f", T, Intent.TEMPERATURE, 38.0),
    case("101F", None, Intent.TEMPERATURE, 38.3),
    case("99.5 F", T, Intent.TEMPERATURE, 37.5),
    case("98.6", T, Intent.TEMPERATURE, 37.0),
    case("100", T, Intent.TEMPERATURE, 37.8),
    case("102 fahrenheit", None, Intent.TEMPERATURE, 38.9),
    # --- French and Dutch
    case("t° 38,2", None, Intent.TEMPERATURE, 38.2),
    case("38,2 degrés", T, Intent.TEMPERATURE, 38.2),
    case("Mijn temperatuur is 37,9 graden", T, Intent.TEMPERATURE, 37.9),
    case("koorts 38,5", None, Intent.TEMPERATURE, 38.5),
    case("fièvre 38.9", None, Intent.TEMPERATURE, 38.9),
    case("37,6 verhoging", T, Intent.TEMPERATURE, 37.6),
    # --- temperature and symptoms together
    case("temp 38.4 and cough", None, Intent.TEMPERATURE, 38.4, "breathing"),
    case("38.2 and chills", T, Intent.TEMPERATURE, 38.2, "chills"),
    case("bleeding gums and 38.6", T, Intent.TEMPERATURE, 38.6, "bleeding"),
    case("38,3 en hoest", T, Intent.TEMPERATURE, 38.3, "breathing"),
    case("38,1 et des frissons", T, Intent.TEMPERATURE, 38.1, "chills"),
    case("cough 2 days, 37.2", T, Intent.TEMPERATURE, 37.2, "breathing"),
    case("38 2", S, Intent.TEMPERATURE, 38.0, "breathing"),
    case("36.6 and 2 and 4", S, Intent.TEMPERATURE, 36.6, "breathing", "bleeding"),
    # --- unicode digits and look-alikes
    case("٣٨٫٥", T, Intent.TEMPERATURE, 38.5),  # Arabic-Indic digits
    case("３７，８℃", T, Intent.TEMPERATURE, 37.8),  # full-width and the Celsius sign
    case("38º", T, Intent.TEMPERATURE, 38.0),  # masculine ordinal used as a degree sign
    case("३८.२", T, Intent.TEMPERATURE, 38.2),  # Devanagari digits
    # --- implausible: never guess, the caller asks again
    case("3", T, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("12", T, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("380", T, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("45 C", T, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("200F", T, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("0", T, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("93", T, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("37 8", T, Intent.IMPLAUSIBLE_TEMPERATURE),  # 37.0 or 37.8? ask again
    case("38 F", None, Intent.IMPLAUSIBLE_TEMPERATURE),  # 3.3 C
    case("101 C", None, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("temperature is 380", None, Intent.IMPLAUSIBLE_TEMPERATURE),
    case("380 and bleeding", T, Intent.SYMPTOMS, None, "bleeding"),  # the red flag wins
    # --- symptom menu
    case("2", S, Intent.SYMPTOMS, None, "breathing"),
    case("2 3", S, Intent.SYMPTOMS, None, "breathing", "tired"),
    case("2,3", S, Intent.SYMPTOMS, None, "breathing", "tired"),
    case("2.3", S, Intent.SYMPTOMS, None, "breathing", "tired"),
    case("2, 3 and 5", S, Intent.SYMPTOMS, None, "breathing", "tired", "rash"),
    case("2 and 3", S, Intent.SYMPTOMS, None, "breathing", "tired"),
    case("1,2,3", S, Intent.SYMPTOMS, None, "chills", "breathing", "tired"),
    case("3,8", S, Intent.SYMPTOMS, None, "tired", "jaundice"),
    case("1 en 6", S, Intent.SYMPTOMS, None, "chills", "diarrhoea"),
    case("4 et 5", S, Intent.SYMPTOMS, None, "bleeding", "rash"),
    case("4!", S, Intent.SYMPTOMS, None, "bleeding"),
    case("#7", S, Intent.SYMPTOMS, None, "injection_site"),
    case("0 and 2", S, Intent.SYMPTOMS, None, "breathing"),  # a symptom beats "none"
    case("2 and 8", S, Intent.SYMPTOMS, None, "breathing", "jaundice"),
    case("23", S, Intent.UNKNOWN),  # "2 and 3" or a typo: ask again
    case("9", S, Intent.UNKNOWN),
    case("2 3", None, Intent.UNKNOWN),  # numbers mean nothing without the menu
    # --- symptom words
    case("cough", None, Intent.SYMPTOMS, None, "breathing"),
    case("short of breath", None, Intent.SYMPTOMS, None, "breathing"),
    case("short-of-breath", None, Intent.SYMPTOMS, None, "breathing"),
    case("Shortness of breath since yesterday", None, Intent.SYMPTOMS, None, "breathing"),
    case("breathless", S, Intent.SYMPTOMS, None, "breathing"),
    case("can't breathe properly", None, Intent.SYMPTOMS, None, "breathing"),
    case("bleeding", S, Intent.SYMPTOMS, None, "bleeding"),
    case("bruises on my legs", None, Intent.SYMPTOMS, None, "bleeding"),
    case("nosebleed", None, Intent.SYMPTOMS, None, "bleeding"),
    case("rash on arm", None, Intent.SYMPTOMS, None, "rash"),
    case("diarrhoea", S, Intent.SYMPTOMS, None, "diarrhoea"),
    case("diarrhea", S, Intent.SYMPTOMS, None, "diarrhoea"),
    case("diarrhoea for 3 days", S, Intent.SYMPTOMS, None, "diarrhoea"),  # "3" is a count
    case("chills", S, Intent.SYMPTOMS, None, "chills"),
    case("shivering", None, Intent.SYMPTOMS, None, "chills"),
    case("very tired", None, Intent.SYMPTOMS, None, "tired"),
    case("exhausted", None, Intent.SYMPTOMS, None, "tired"),
    case("injection site is red and swollen", None, Intent.SYMPTOMS, None, "injection_site"),
    case("yellow eyes", None, Intent.SYMPTOMS, None, "jaundice"),
    case("help I'm bleeding", None, Intent.SYMPTOMS, None, "bleeding"),
    case("yes I have a cough", S, Intent.SYMPTOMS, None, "breathing"),
    case("not coughing", S, Intent.NO_SYMPTOMS),  # a negation: red flags must not trigger on it
    case("toux", None, Intent.SYMPTOMS, None, "breathing"),
    case("frissons", None, Intent.SYMPTOMS, None, "chills"),
    case("saignement du nez", None, Intent.SYMPTOMS, None, "bleeding"),
    case("je suis essoufflée", None, Intent.SYMPTOMS, None, "breathing"),
    case("j'ai des frissons et je suis essoufflé", S, Intent.SYMPTOMS, None, "chills", "breathing"),
    case("je suis très fatiguée", None, Intent.SYMPTOMS, None, "tired"),
    case("diarrhée", None, Intent.SYMPTOMS, None, "diarrhoea"),
    case("rougeur au point d'injection", None, Intent.SYMPTOMS, None, "rash", "injection_site"),
    case("les yeux jaunes", None, Intent.SYMPTOMS, None, "jaundice"),
    case("jaunisse", None, Intent.SYMPTOMS, None, "jaundice"),
    case("hoest", None, Intent.SYMPTOMS, None, "breathing"),
    case("ik ben kortademig en heb diarree", None, Intent.SYMPTOMS, None, "breathing", "diarrhoea"),
    case("bloeding", None, Intent.SYMPTOMS, None, "bleeding"),
    case("blauwe plekken", None, Intent.SYMPTOMS, None, "bleeding"),
    case("rillingen", None, Intent.SYMPTOMS, None, "chills"),
    case("doodmoe", None, Intent.SYMPTOMS, None, "tired"),
    case("huiduitslag", None, Intent.SYMPTOMS, None, "rash"),
    case("prikplaats is rood", None, Intent.SYMPTOMS, None, "injection_site"),
    case("geel", None, Intent.SYMPTOMS, None, "jaundice"),
    case("koorts en hoest", None, Intent.SYMPTOMS, None, "breathing"),
    # --- nothing wrong
    case("none", S, Intent.NO_SYMPTOMS),
    case("None", S, Intent.NO_SYMPTOMS),
    case("nothing", S, Intent.NO_SYMPTOMS),
    case("0", S, Intent.NO_SYMPTOMS),
    case("no", S, Intent.NO_SYMPTOMS),
    case("rien", S, Intent.NO_SYMPTOMS),
    case("aucun", S, Intent.NO_SYMPTOMS),
    case("geen", S, Intent.NO_SYMPTOMS),
    case("niets", S, Intent.NO_SYMPTOMS),
    case("none thanks", S, Intent.NO_SYMPTOMS),
    case("I'm fine", S, Intent.NO_SYMPTOMS),
    case("all good", S, Intent.NO_SYMPTOMS),
    case("ça va bien merci", S, Intent.NO_SYMPTOMS),
    case("rien à signaler", S, Intent.NO_SYMPTOMS),
    case("geen klachten", S, Intent.NO_SYMPTOMS),
    case("alles goed", S, Intent.NO_SYMPTOMS),
    case("no cough", S, Intent.NO_SYMPTOMS),
    case("geen hoest", S, Intent.NO_SYMPTOMS),
    case("pas de toux", S, Intent.NO_SYMPTOMS),
    case("pas d'essoufflement", S, Intent.NO_SYMPTOMS),
    case("no fever", S, Intent.NO_SYMPTOMS),
    case("sans fièvre", S, Intent.NO_SYMPTOMS),
    case("I don't have any symptoms", S, Intent.NO_SYMPTOMS),
    case("no cough or chills", S, Intent.SYMPTOMS, None, "chills"),  # only "cough" is negated
    case("no but my arm is swollen", S, Intent.UNKNOWN),  # a short answer plus more: the team
    # --- pill confirmation
    case("taken", C, Intent.TAKEN),
    case("TAKEN", C, Intent.TAKEN),
    case("Taken ✅", C, Intent.TAKEN),
    case("took it", C, Intent.TAKEN),
    case("I took them", C, Intent.TAKEN),
    case("done", C, Intent.TAKEN),
    case("taken at 8am", C, Intent.TAKEN),
    case("took 40 mg", C, Intent.TAKEN),  # a dose, not a temperature
    case("pris", C, Intent.TAKEN),
    case("je l'ai pris", C, Intent.TAKEN),
    case("c'est fait", C, Intent.TAKEN),
    case("genomen", C, Intent.TAKEN),
    case("ingenomen", C, Intent.TAKEN),
    case("ik heb ze ingenomen", C, Intent.TAKEN),
    case("yes", C, Intent.TAKEN),
    case("oui", C, Intent.TAKEN),
    case("not taken yet", C, Intent.NO),
    case("forgot", C, Intent.NO),
    case("nog niet genomen", C, Intent.NO),
    case("no", C, Intent.NO),
    # --- yes / no
    case("yes", YN, Intent.YES),
    case("YES", YN, Intent.YES),
    case("y", YN, Intent.YES),
    case("yeah", YN, Intent.YES),
    case("yes please", YN, Intent.YES),
    case("oui", YN, Intent.YES),
    case("oui merci", YN, Intent.YES),
    case("ja", YN, Intent.YES),
    case("no", YN, Intent.NO),
    case("no thanks", YN, Intent.NO),
    case("nope", YN, Intent.NO),
    case("non", YN, Intent.NO),
    case("nee", YN, Intent.NO),
    # --- keywords (whole message only)
    case("STOP", None, Intent.OPT_OUT),
    case("Stop", None, Intent.OPT_OUT),
    case(" stop ", S, Intent.OPT_OUT),
    case("stop.", T, Intent.OPT_OUT),
    case("STOPALL", None, Intent.OPT_OUT),
    case("unsubscribe", None, Intent.OPT_OUT),
    case("Cancel", C, Intent.OPT_OUT),
    case("END", None, Intent.OPT_OUT),
    case("quit", None, Intent.OPT_OUT),
    case("REVOKE", None, Intent.OPT_OUT),
    case("optout", None, Intent.OPT_OUT),
    case("ARRÊT", None, Intent.OPT_OUT),
    case("stop please", None, Intent.UNKNOWN),
    case("please don't stop my reminders", None, Intent.UNKNOWN),
    case("opt out", None, Intent.UNKNOWN),
    case("START", None, Intent.OPT_IN),
    case("unstop", S, Intent.OPT_IN),
    case("YES", None, Intent.OPT_IN),
    case("HELP", None, Intent.HELP),
    case("help!", S, Intent.HELP),
    case("info", None, Intent.HELP),
    case("HELP ME", None, Intent.UNKNOWN),  # not a keyword: the team reads it
    # --- everything else goes to the care team
    case("", None, Intent.EMPTY),
    case("   ", S, Intent.EMPTY),
    case("\u200b", T, Intent.EMPTY),  # zero-width space only
    case("👍", C, Intent.UNKNOWN),
    case("🤒", S, Intent.UNKNOWN),
    case("?", None, Intent.UNKNOWN),
    case("thanks", None, Intent.UNKNOWN),
    case("koorts", None, Intent.SYMPTOMS),  # fever word, no number: a red flag, see below
    case("j'ai de la fièvre", T, Intent.SYMPTOMS),
    case("I had my blood test today", None, Intent.UNKNOWN),  # not bleeding
    case("bloedafname gedaan", None, Intent.UNKNOWN),
    case("Can I take paracetamol?", None, Intent.UNKNOWN),
    case("two", S, Intent.UNKNOWN),
    case("I feel 100%", None, Intent.UNKNOWN),
    case("Je ne peux pas venir demain", None, Intent.UNKNOWN),
    case("Ik kom morgen wat later", YN, Intent.UNKNOWN),
]
# fmt: on


def test_the_table_is_large_enough():
    assert len(REPLIES) >= 100


@pytest.mark.parametrize("c", REPLIES)
def test_realistic_replies(c: Case):
    reply = parse_reply(c.text, c.expecting)
    assert reply.intent == c.intent, reply
    assert reply.temperature_c == c.temperature_c, reply
    assert reply.symptoms == c.symptoms, reply


# --------------------------------------------------------------------------- temperatures
@pytest.mark.parametrize(
    ("text", "unit", "inferred", "raw"),
    [
        ("37,8", "C", True, "37,8"),
        ("38 C", "C", False, "38 c"),
        ("101.2F", "F", False, "101.2f"),
        ("100.4 f", "F", False, "100.4 f"),
        ("101", "F", True, "101"),
        ("38,5°C", "C", False, "38,5°c"),
    ],
)
def test_temperature_unit_and_raw_text(text, unit, inferred, raw):
    reply = parse_reply(text, T)
    assert reply.temperature_unit == unit
    assert reply.temperature_unit_inferred is inferred
    assert reply.raw_temperature == raw


def test_fever_threshold_in_fahrenheit_converts_to_the_celsius_threshold():
    fever = clinical_rules().fever
    reply = parse_reply(f"{fever.threshold_f} F", T)
    assert reply.temperature_c == fever.threshold_c


def test_plausible_range_comes_from_clinical_rules():
    fever = clinical_rules().fever
    low, high = fever.plausible_min_c, fever.plausible_max_c
    assert parse_reply(str(low), T).temperature_c == low
    assert parse_reply(str(high), T).temperature_c == high
    assert parse_reply(f"{low - 0.1:.1f}", T).intent == Intent.IMPLAUSIBLE_TEMPERATURE
    assert parse_reply(f"{high + 0.1:.1f}", T).intent == Intent.IMPLAUSIBLE_TEMPERATURE


def test_plausible_range_follows_a_changed_rule(monkeypatch):
    rules = clinical_rules()
    narrower = dataclasses.replace(rules.fever, plausible_max_c=40.0)
    monkeypatch.setattr(
        parser, "clinical_rules", lambda: dataclasses.replace(rules, fever=narrower)
    )
    assert parse_reply("41", T).intent == Intent.IMPLAUSIBLE_TEMPERATURE
    assert parse_reply("39.9", T).temperature_c == 39.9


def test_implausible_temperature_keeps_what_was_typed():
    reply = parse_reply("380", T)
    assert reply.raw_temperature == "380"
    assert reply.temperature_implausible
    assert reply.temperature_c is None


def test_implausible_temperature_with_a_red_flag_still_reports_the_symptom():
    reply = parse_reply("380 and bleeding", T)
    assert reply.intent == Intent.SYMPTOMS
    assert reply.temperature_implausible
    assert reply.symptoms == {"bleeding"}


def test_bare_fahrenheit_number_outside_a_temperature_question_is_not_guessed():
    assert parse_reply("100", S).intent == Intent.UNKNOWN
    assert parse_reply("100 F", S).temperature_c == 37.8


def test_every_unit_spelling_is_consumed_not_left_as_free_text():
    for text in ("38 C", "38c", "101 F", "38 degrees", "38,2 graden", "38°C", "38 celsius"):
        assert not parse_reply(text, T).has_free_text, text


# --------------------------------------------------------------------------- keywords
@pytest.mark.parametrize("keyword", sorted(OPT_OUT_KEYWORDS))
@pytest.mark.parametrize("expecting", [None, *Expecting])
def test_opt_out_keywords_opt_out_whatever_we_asked(keyword, expecting):
    for text in (keyword, keyword.lower(), f"  {keyword.title()}\n"):
        reply = parse_reply(text, expecting)
        assert reply.intent == Intent.OPT_OUT
        assert reply.opts_out and reply.keyword == keyword


@pytest.mark.parametrize(
    ("expecting", "intent"),
    [
        (None, Intent.OPT_IN),
        (YN, Intent.YES),
        (C, Intent.TAKEN),
        (T, Intent.YES),
        (S, Intent.YES),
    ],
)
def test_yes_answers_the_question_but_always_mirrors_the_gateway_opt_in(expecting, intent):
    reply = parse_reply("YES", expecting)
    assert reply.intent == intent
    assert reply.keyword == "YES"
    assert reply.opts_in  # Twilio re-subscribes the number whenever YES arrives


def test_yes_like_words_are_not_gateway_keywords():
    for text in ("yeah", "oui", "ja", "y"):
        assert not parse_reply(text, YN).opts_in


@pytest.mark.parametrize(
    "text", ["stop please", "please stop", "STOP STOP", "stop!!!!?", "s t o p"]
)
def test_only_the_single_keyword_opts_out(text):
    reply = parse_reply(text)
    assert reply.intent != Intent.OPT_OUT
    assert not reply.opts_out


def test_keyword_sets_match_twilio_defaults():
    assert {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"} <= (
        OPT_OUT_KEYWORDS
    )
    assert {"START", "UNSTOP", "YES"} == OPT_IN_KEYWORDS


# --------------------------------------------------------------------------- other fields
def test_fever_word_without_number_is_flagged():
    for text in ("koorts", "I have a fever", "j'ai de la fièvre", "ik heb verhoging"):
        reply = parse_reply(text, T)
        assert reply.intent == Intent.SYMPTOMS
        assert reply.mentions_fever, text
        assert reply.red_flags == {"fever"}, text
    assert not parse_reply("geen koorts", S).mentions_fever


def test_negated_symptoms_are_reported_separately():
    reply = parse_reply("no cough", S)
    assert reply.symptoms == frozenset()
    assert reply.negated_symptoms == {"breathing"}


def test_menu_numbers_are_recorded():
    assert parse_reply("5, 2 and 2", S).menu_numbers == (2, 5)


def test_free_text_flag_tells_the_caller_to_show_the_team():
    assert parse_reply("38.2 and my leg is swollen", T).has_free_text
    assert parse_reply("Temp is 38.1 this morning", T).has_free_text is False
    assert parse_reply("2 3", S).has_free_text is False
    assert parse_reply("38.5 🤒", T).has_free_text


def test_very_long_text_is_parsed_and_keeps_the_important_part():
    text = "I wanted to tell you about my week. " * 40 + "Today 38.6 and I keep coughing."
    reply = parse_reply(text, T)
    assert reply.intent == Intent.TEMPERATURE
    assert reply.temperature_c == 38.6
    assert reply.symptoms == {"breathing"}
    assert reply.has_free_text


def test_symptom_menu_covers_every_code():
    assert set(SYMPTOM_MENU.values()) == SYMPTOM_CODES
    assert sorted(SYMPTOM_MENU) == list(range(1, len(SYMPTOM_MENU) + 1))


def test_parsed_reply_is_frozen():
    reply = parse_reply("37.8", T)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.intent = Intent.UNKNOWN  # type: ignore[misc]


# --------------------------------------------------------------------------- properties
@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=300), expecting=st.sampled_from([None, *Expecting]))
def test_parse_never_raises_and_keeps_its_invariants(text, expecting):
    # _parse, not parse_reply: parse_reply's safety net must not hide a bug here.
    reply = parser._parse(text, expecting)
    _check_invariants(reply)


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(
            [
                "37,8",
                "38",
                "101F",
                "2",
                "3,5",
                "0",
                "and",
                "cough",
                "no",
                "geen",
                "taken",
                "yes",
                "STOP",
                "°",
                "C",
                "f",
                "at",
                "8:30",
                "days",
                "!",
                "👍",
                "koorts",
                "blood test",
                " ",
            ]
        ),
        max_size=12,
    ).map(" ".join),
    expecting=st.sampled_from([None, *Expecting]),
)
def test_parse_never_raises_on_realistic_fragments(text, expecting):
    _check_invariants(parser._parse(text, expecting))


def _check_invariants(reply: ParsedReply) -> None:
    fever = clinical_rules().fever
    assert isinstance(reply.intent, Intent)
    assert reply.symptoms <= SYMPTOM_CODES
    assert (reply.intent == Intent.TEMPERATURE) == (reply.temperature_c is not None)
    if reply.temperature_c is not None:
        assert fever.plausible_min_c <= reply.temperature_c <= fever.plausible_max_c
        assert round(reply.temperature_c, 1) == reply.temperature_c
    if reply.intent == Intent.SYMPTOMS:
        assert reply.symptoms or reply.red_flags


@given(text=st.text(max_size=50))
def test_public_parse_reply_never_raises(text):
    assert isinstance(parse_reply(text), ParsedReply)
