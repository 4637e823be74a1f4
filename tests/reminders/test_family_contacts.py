"""A patient's family contacts (issue 15, item 6): consent, copies, STOP, messages, nudges.

On SQLite and PostgreSQL, through the conversation service the webhook calls; one test
goes end to end (signed webhook, the dispatcher, the real twilio client, the test Twilio
server).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from backend.schemas_family import FamilyContactIn
from backend.services import family as family_service
from reminders.conversations import handle_inbound_sms
from reminders.core.clinical_rules import LANGUAGES, emergency_fallback
from reminders.core.regions import get_region
from reminders.core.templates import (
    FAMILY_TEMPLATE_KEYS,
    get_template,
    render,
    segments,
    to_gsm7,
)
from reminders.data.models import (
    Alert,
    CheckIn,
    FamilyContact,
    InboundMessage,
    OutboundMessage,
    Patient,
)
from reminders.data.statuses import CheckInState, OutboxStatus
from reminders.dispatch import dispatch_due_messages
from reminders.escalation import escalate_alerts
from reminders.followups import follow_up_checkins
from reminders.gateways import TwilioGateway
from reminders.planning import materialise_due_messages
from tests.conftest import reread
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    inbound_sms_params,
    signed_form_post,
)

PATIENT_NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
DAUGHTER_PHONE = "+32471987654"
SON_PHONE = "+32472123456"
NEIGHBOUR_PHONE = "+32473555777"
OUR_NUMBER = "+32460000000"
BASE = "https://companion.test"


@pytest.fixture
def family(session: Session, treated_patient, clock) -> dict[str, Any]:
    """A French-speaking patient on alemtuzumab with a Dutch daughter and an English son."""
    patient = treated_patient(display_name=PATIENT_NAME, language="fr")
    daughter = add(session, patient, "Zoë Vandenbroucke", DAUGHTER_PHONE, "nl", "dochter")
    son = add(session, patient, "Jean-Christophe Delacroix", SON_PHONE, "en", "son")
    return {"patient": patient, "daughter": daughter, "son": son}


def add(
    session: Session, patient: Patient, name: str, phone: str, language: str, relationship: str
) -> FamilyContact:
    contact = family_service.add_contact(
        session,
        patient,
        FamilyContactIn(
            name=name,
            phone=phone,
            language=language,
            relationship=relationship,
            consent_method="verbal",
        ),
        None,
        reread(session).get(Patient, patient.id).updated_at,
        region="BE",
    )
    session.commit()
    return contact


def sms(session: Session, phone: str, body: str, now, sid: str | None = None):
    result = handle_inbound_sms(
        session,
        provider_sid=sid or f"SM{abs(hash((phone, body, now))):032x}"[:34],
        from_phone=phone,
        body=body,
        now=now,
    )
    session.commit()
    return result


def to_family(session: Session, kind: str | None = None) -> list[OutboundMessage]:
    reread(session)
    query = select(OutboundMessage).where(OutboundMessage.recipient == "family")
    if kind is not None:
        query = query.where(OutboundMessage.kind == kind)
    return list(session.exec(query.order_by(OutboundMessage.id)).all())


def alerts(session: Session) -> list[Alert]:
    reread(session)
    return list(session.exec(select(Alert).order_by(Alert.id)).all())


# --- the words --------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("region", ["BE", "US"])
@pytest.mark.parametrize("name", ["Marie-Antoinette", "Jean-Christophe", "Loïc-François"])
@pytest.mark.parametrize("key", FAMILY_TEMPLATE_KEYS)
def test_every_family_sms_is_one_gsm7_segment_in_every_language(
    key: str, name: str, region: str, language: str
) -> None:
    """Real-length first names (spelt in GSM-7 as rendering spells them), a mobile number
    as the team's, the emergency fallback of the patient's region."""
    text = render(
        key,
        language,
        region=get_region(region),
        first_name=to_gsm7(name),
        team_phone="+32 470 12 34 56",
    )
    info = segments(text)
    assert (info.encoding, info.segments) == ("GSM-7", 1), (text, info)
    assert to_gsm7(name) in text
    if "{emergency_fallback}" in get_template(key, language).text:
        assert text.endswith(emergency_fallback(language, get_region(region)))
    # Discreet by design: no drug, no disease, no temperature.
    assert not re.search(r"\d\d[.,]\d|alemtuzumab|CMV|leuk|lymph", text, re.I), text


# --- consent ------------------------------------------------------------------------------


def test_a_contact_added_with_consent_is_told_in_their_language_what_they_get(
    session: Session, family
) -> None:
    infos = to_family(session, "family_info")
    assert [(m.to_phone, m.patient_id) for m in infos] == [
        (DAUGHTER_PHONE, family["patient"].id),
        (SON_PHONE, family["patient"].id),
    ]
    daughter, son = (m.body for m in infos)
    assert daughter.startswith("Het zorgteam van Marie-Thérèse") and "STOP" in daughter
    assert son.startswith("Marie-Thérèse's care team will text you") and "STOP" in son
    for body in (daughter, son):
        assert segments(body).segments == 1 and segments(body).encoding == "GSM-7"


def test_no_copy_without_consent_and_a_withdrawal_stops_them_at_once(
    session: Session, family, clock
) -> None:
    family_service.withdraw_consent(session, family["son"], None, clock.now)
    session.commit()
    sms(session, family["patient"].phone, "39,2", clock.now)
    copies = to_family(session, "family_urgent_copy")
    assert [m.to_phone for m in copies] == [DAUGHTER_PHONE]
    # A copy still waiting (the dispatcher has not sent it) is cancelled by a withdrawal.
    family_service.withdraw_consent(session, family["daughter"], None, clock.now)
    session.commit()
    [copy] = to_family(session, "family_urgent_copy")
    assert copy.status == OutboxStatus.CANCELLED and "withdrew" in copy.error_reason
    clock.advance(hours=1)
    sms(session, family["patient"].phone, "39,4", clock.now)
    assert len(to_family(session, "family_urgent_copy")) == 1


# --- copies of urgent advice ----------------------------------------------------------------


def test_an_urgent_reply_is_copied_to_each_contact_in_their_language_in_one_segment(
    session: Session, family, clock
) -> None:
    result = sms(
        session, family["patient"].phone, "39,2 et des frissons", clock.now, sid="SMfever1"
    )
    assert "appelez" in result.reply  # the patient's advice, in French
    [alert] = [a for a in alerts(session) if a.severity == "urgent"]
    copies = {m.to_phone: m for m in to_family(session, "family_urgent_copy")}
    assert set(copies) == {DAUGHTER_PHONE, SON_PHONE}
    dutch, english = copies[DAUGHTER_PHONE], copies[SON_PHONE]
    assert dutch.body.startswith("Zorgteam: Marie-Thérèse meldde een alarmsignaal")
    assert english.body.startswith("Care team: Marie-Thérèse reported a warning sign")
    assert dutch.body.endswith(emergency_fallback("nl", get_region("BE")))
    assert english.body.endswith(emergency_fallback("en", get_region("BE")))
    for copy in copies.values():
        # Discreet: no temperature, no drug, no symptom; urgent, queued with the alert.
        assert not re.search(r"39|alemtuzumab|frisson|chill|rilling", copy.body, re.I)
        assert "+32 2 555 01 23" in copy.body
        assert copy.urgent and copy.status == OutboxStatus.PENDING and copy.due_at == clock.now
        assert copy.dedupe_key.endswith(":urgent:SMfever1")
        info = segments(copy.body)
        assert (info.encoding, info.segments) == ("GSM-7", 1)
    assert alert.created_at == clock.now
    # A repeated delivery of the same message copies nothing again.
    sms(session, family["patient"].phone, "39,2 et des frissons", clock.now, sid="SMfever1")
    assert len(to_family(session, "family_urgent_copy")) == 2


def test_the_copy_names_the_emergency_number_of_the_patients_region(
    session: Session, treated_patient, clock
) -> None:
    patient = treated_patient(display_name="Jean-Christophe Vandenbroucke", region="US")
    add(session, patient, "Zoë Vandenbroucke", DAUGHTER_PHONE, "fr", "fille")
    sms(session, patient.phone, "I have chest pain", clock.now)
    [copy] = to_family(session, "family_urgent_copy")
    assert "911" in copy.body and "112" not in copy.body
    assert copy.body.startswith("Urgent : Jean-Christophe signale")
    assert segments(copy.body).segments == 1


def test_a_routine_reply_copies_nothing(session: Session, family, clock) -> None:
    sms(session, family["patient"].phone, "36,8", clock.now)
    assert to_family(session, "family_urgent_copy") == []


# --- STOP and START from the family ------------------------------------------------------------


@pytest.mark.parametrize("word", ["STOP", "arret", "Stop.", "UNSUBSCRIBE"])
def test_stop_from_a_contact_stops_only_their_copies(
    session: Session, family, clock, word: str
) -> None:
    patient = family["patient"]
    result = sms(session, DAUGHTER_PHONE, word, clock.now)
    assert result.reply is None and result.intent == "family_opt_out"
    daughter = reread(session).get(FamilyContact, family["daughter"].id)
    assert daughter.opted_out_at == clock.now
    [info] = [m for m in to_family(session, "family_info") if m.to_phone == DAUGHTER_PHONE]
    assert info.status == OutboxStatus.CANCELLED
    # The patient's SMS go on: not opted out, reminders still planned and sent to them.
    assert session.get(Patient, patient.id).opted_out is False
    assert session.get(FamilyContact, family["son"].id).opted_out_at is None
    materialise_due_messages(session, clock.now + timedelta(days=1))
    session.commit()
    reread(session)
    planned = session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == patient.id,
            OutboundMessage.recipient == "patient",
            OutboundMessage.status == OutboxStatus.PENDING,
        )
    ).all()
    assert planned, "the patient's reminders stop with the family's STOP"
    assert not alerts(session)  # a relative's STOP is no opt-out of the patient
    sms(session, patient.phone, "39,5", clock.now)
    assert [m.to_phone for m in to_family(session, "family_urgent_copy")] == [SON_PHONE]


def test_start_from_a_contact_gives_them_their_copies_back(session: Session, family, clock) -> None:
    sms(session, DAUGHTER_PHONE, "STOP", clock.now)
    clock.advance(minutes=10)
    result = sms(session, DAUGHTER_PHONE, "START", clock.now)
    assert result.intent == "family_opt_in"
    assert result.reply.startswith("U krijgt weer sms'jes van het zorgteam van Marie-Thérèse")
    [answer] = to_family(session, "family_opted_in")
    assert (answer.to_phone, answer.status) == (DAUGHTER_PHONE, OutboxStatus.SENT)
    assert reread(session).get(FamilyContact, family["daughter"].id).opted_out_at is None
    sms(session, family["patient"].phone, "39,5", clock.now)
    assert {m.to_phone for m in to_family(session, "family_urgent_copy")} == {
        DAUGHTER_PHONE,
        SON_PHONE,
    }


# --- messages from the family --------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "body", "kind", "words"),
    [
        (SON_PHONE, "il a du mal à respirer", "red_flag", "call the care team at once"),
        (DAUGHTER_PHONE, "hij heeft koorts en rillingen", "fever_in_words", "bel nu het zorgteam"),
        (SON_PHONE, "she is confused", "red_flag", "call the care team at once"),
    ],
)
def test_a_red_flag_in_a_family_message_is_urgent_and_paged(
    session: Session, family, clock, phone: str, body: str, kind: str, words: str
) -> None:
    result = sms(session, phone, body, clock.now, sid="SMfamily1")
    assert result.intent == "family_message" and words in result.reply
    assert "Marie-Thérèse" in result.reply and "112" in result.reply
    [alert] = alerts(session)
    assert (alert.patient_id, alert.severity, alert.kind) == (family["patient"].id, "urgent", kind)
    assert alert.details["reported_by"] == "family"
    assert alert.details["family_contact_id"] in (family["son"].id, family["daughter"].id)
    assert body in alert.reason and alert.reason.startswith("URGENT, Message from family contact")
    # Paged like a patient's urgent alert: the first step of the escalation is queued.
    reread(session)
    pages = session.exec(select(OutboundMessage).where(OutboundMessage.alert_id == alert.id)).all()
    assert pages and all(p.urgent for p in pages) and alert.escalation_count == 1
    # The page says who reported, and who was told to call: not the patient.
    [page] = pages
    assert page.kind == "oncall_alert_family"
    assert "Reported by a family member, who was told to call" in page.body
    assert "Patient told" not in page.body
    # The answer is kept as the family member's, out of the patient's thread.
    [stored] = to_family(session, "family_urgent_reply")
    assert (stored.to_phone, stored.dedupe_key) == (phone, "reply:SMfamily1")
    inbound = session.exec(select(InboundMessage)).all()[-1]
    assert (inbound.patient_id, inbound.intent) == (None, "family_message")
    assert segments(result.reply).segments == 1


def test_every_later_page_of_a_family_report_names_it_and_the_call_gives_their_number(
    session: Session, family, clock
) -> None:
    """The default policy with no rota: the fallback number, by SMS then by call."""
    sms(session, SON_PHONE, "il a du mal à respirer", clock.now, sid="SMfamily2")
    [alert] = alerts(session)
    escalate_alerts(session, clock.now + timedelta(minutes=5))
    escalate_alerts(session, clock.now + timedelta(minutes=10))
    session.commit()
    reread(session)
    pages = session.exec(
        select(OutboundMessage)
        .where(OutboundMessage.alert_id == alert.id)
        .order_by(OutboundMessage.id)
    ).all()
    calls = [p.body for p in pages if p.channel == "voice"]
    again = [p.body for p in pages if p.kind == "oncall_reescalation"]
    assert calls and again, [(p.kind, p.channel) for p in pages]
    for call in calls:
        assert "Reason: red-flag symptom, reported by a family member." in call
        # SON_PHONE (+32 472 12 34 56) read out digit by digit, in threes.
        assert "The family member's number is: 3 2 4, 7 2 1, 2 3 4, 5 6." in call, call
    assert all("red-flag symptom, reported by a family member" in body for body in again)


def test_a_plain_family_message_goes_to_the_queue_not_urgent(
    session: Session, family, clock
) -> None:
    result = sms(session, DAUGHTER_PHONE, "Kan iemand mij terugbellen over mama?", clock.now)
    assert result.reply.startswith("Uw bericht over Marie-Thérèse is doorgegeven")
    [alert] = alerts(session)
    assert (alert.severity, alert.kind) == ("high", "family_message")
    assert alert.reason == (
        "Message from family contact (dochter): Kan iemand mij terugbellen over mama?"
    )
    assert alert.escalation_count == 0
    reread(session)
    assert not session.exec(
        select(OutboundMessage).where(OutboundMessage.alert_id == alert.id)
    ).all()


def test_a_number_that_is_a_patients_and_a_contacts_is_the_patients(
    session: Session, family, treated_patient, clock
) -> None:
    """The patient wins: their own replies are never taken for a relative's."""
    other = treated_patient(display_name="Zoë Vandenbroucke", phone=NEIGHBOUR_PHONE)
    add(session, family["patient"], "Zoë Vandenbroucke", NEIGHBOUR_PHONE, "nl", "buurvrouw")
    result = sms(session, NEIGHBOUR_PHONE, "STOP", clock.now)
    assert result.intent == "opt_out"
    assert reread(session).get(Patient, other.id).opted_out is True


def test_an_unknown_number_stays_unknown(session: Session, family, clock) -> None:
    """No alert, no family answer: the unknown number's own (reminders.unknown_senders)."""
    result = sms(session, "+32479000111", "she is confused", clock.now)
    assert result.intent == "unknown_sender_answered" and result.patient_id is None
    # English words from a Belgian number: the answer in French, then Dutch.
    assert result.reply.startswith("Numéro inconnu de notre service SMS")
    assert "\nDit nummer is onbekend" in result.reply
    assert "Marie-Thérèse" not in result.reply
    assert alerts(session) == [] and to_family(session, "family_message_ack") == []


# --- the nudge after two unanswered check-ins ---------------------------------------------------


def unanswered_checkin(session: Session, patient: Patient, opened, n: int) -> CheckIn:
    """A check-in sent at ``opened`` and re-sent once, still waiting."""
    checkin = CheckIn(
        patient_id=patient.id,
        event_key=f"test-checkin:{n}",
        opened_at=opened,
        last_prompt_at=opened + timedelta(minutes=30),
        resend_count=1,
    )
    session.add(checkin)
    session.commit()
    return checkin


def test_two_unanswered_check_ins_in_a_row_nudge_the_family_once(
    session: Session, family, clock
) -> None:
    patient = family["patient"]
    family_service.update_contact(
        session,
        patient,
        family["son"],
        family_service.FamilyContactUpdate(copies_nudges=False),
        clock.now,
        region="BE",
    )
    session.commit()
    start = clock.now
    for day in range(4):
        unanswered_checkin(session, patient, start + timedelta(days=day), day)
        clock.now = start + timedelta(days=day, hours=6)
        counts = follow_up_checkins(session, clock.now)
        session.commit()
        assert counts["flagged"] == 1
        nudges = to_family(session, "family_checkin_nudge")
        # The second in a row nudges; the third and fourth are the same run.
        assert len(nudges) == (0 if day == 0 else 1), day
    [nudge] = nudges
    assert nudge.to_phone == DAUGHTER_PHONE  # the son asked for no nudges
    assert nudge.body.startswith("Zorgteam: Marie-Thérèse antwoordde twee keer na elkaar niet")
    assert segments(nudge.body).segments == 1 and not nudge.urgent
    # An answer ends the run: the next two unanswered ones nudge again.
    answered = unanswered_checkin(session, patient, start + timedelta(days=4), 4)
    answered.state, answered.closed_at = CheckInState.CLOSED, start + timedelta(days=4, hours=1)
    session.add(answered)
    session.commit()
    for day in (5, 6):
        unanswered_checkin(session, patient, start + timedelta(days=day), day)
        clock.now = start + timedelta(days=day, hours=6)
        follow_up_checkins(session, clock.now)
        session.commit()
    assert len(to_family(session, "family_checkin_nudge")) == 2


def test_a_nudge_due_in_the_patients_quiet_hours_waits_for_the_morning(
    session: Session, family, clock
) -> None:
    patient = family["patient"]
    evening = clock.now.replace(hour=19)  # 20:00 in Brussels: each flag comes at 23:00
    for n in range(2):
        unanswered_checkin(session, patient, evening + timedelta(days=n), n)
        follow_up_checkins(session, evening + timedelta(days=n, hours=3))
        session.commit()
    nudges = to_family(session, "family_checkin_nudge")
    assert len(nudges) == 2  # one per consenting contact
    # The second flag, at 23:00 on 3 March: the nudges wait for 07:00 on 4 March.
    assert {n.due_at for n in nudges} == {(evening + timedelta(days=2)).replace(hour=6)}


# --- end to end ------------------------------------------------------------------------------


def test_a_fever_sms_reaches_the_family_through_the_dispatcher_and_twilio(
    app, client, session: Session, family, engine, fake_twilio, clock
) -> None:
    """Signed webhook -> urgent copy in the outbox -> the dispatcher -> the real twilio
    client -> the test Twilio server, to the family's phones; the patient gets no copy."""
    app.config["TWILIO_AUTH_TOKEN"] = FAKE_AUTH_TOKEN
    params = inbound_sms_params(family["patient"].phone, "39,1", OUR_NUMBER)
    answer = signed_form_post(client, f"{BASE}/twilio/sms", params, FAKE_AUTH_TOKEN)
    assert answer.status_code == 200 and "appelez" in answer.text
    gateway = TwilioGateway(
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        from_number=FROM_VALID,
        api_base_url=fake_twilio.base_url,
        timeout=2,
    )
    report = dispatch_due_messages(engine, gateway, lambda: clock.now)
    assert report.sent >= 4  # two family infos, two copies (and the on-call page)
    [dutch_copy] = [b for b in fake_twilio.bodies_to(DAUGHTER_PHONE) if b.startswith("Zorgteam:")]
    [english_copy] = [b for b in fake_twilio.bodies_to(SON_PHONE) if b.startswith("Care team:")]
    assert "Marie-Thérèse" in dutch_copy and "Marie-Thérèse" in english_copy
    assert not any(
        b.startswith(("Zorgteam", "Care team"))
        for b in fake_twilio.bodies_to(family["patient"].phone)
    )
    sent = {m.to_phone: m for m in to_family(session, "family_urgent_copy")}
    assert {m.status for m in sent.values()} == {OutboxStatus.SENT}
    assert all(m.provider_sid for m in sent.values())
