"""The data rights on SQLite and PostgreSQL: the whole record as FHIR R4, and the erasure.

After a week of care (``rights_scenario``): the FHIR Bundle is validated by the
``fhir.resources`` models (R4B, the R4-compatible package of its pydantic-2 releases)
and by the SMART on FHIR client's models, generated from R4 (4.0.1) itself; every reference resolves inside it and the codes are LOINC/UCUM where they should be.
The erasure leaves the patient's name, number and hospital reference in no text column
of any table (the test reflects the database's own tables), cancels every pending SMS,
and planning and dispatch afterwards send nothing to the number.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhirclient.models.bundle import Bundle as R4Bundle
from sqlalchemy import MetaData, func
from sqlmodel import Session, select

from backend.db import get_engine
from backend.services.rights import erase_contact_details, export_bundle, export_record
from reminders.core.fhir import LOINC, UCUM
from reminders.data.models import (
    CalendarFeed,
    DoseRecord,
    InboundMessage,
    LabResult,
    OutboundMessage,
    Patient,
    SymptomReport,
)
from reminders.data.statuses import OutboxStatus
from tests.backend.rights_scenario import (
    E164,
    FAMILY_E164,
    FAMILY_NAME,
    FAMILY_NAME_PARTS,
    FAMILY_NSN,
    HOSPITAL_REF,
    NAME,
    NAME_PARTS,
    NATIONAL,
    NSN,
    a_week_of_care,
    fake_twilio_server,
    run_passes,
)
from tests.conftest import reread
from tests.twilio_fake import FakeTwilio


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    """The Twilio-compatible fake the week's SMS go to."""
    yield from fake_twilio_server(monkeypatch)


def references(value: Any) -> list[str]:
    """Every ``reference`` in a FHIR JSON value."""
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


def test_the_record_exports_as_a_valid_fhir_r4_bundle(
    app, session, clock, make_user, treated, twilio
) -> None:
    week = a_week_of_care(app, session, clock, make_user, treated, twilio, days=4)
    bundle = export_bundle(session, week.patient, clock.now)

    parsed = Bundle.model_validate(bundle)  # the library's R4(B) models: types, cardinality
    # Strict R4 (4.0.1): an unknown property, a wrong type or a missing required element
    # raises; each entry's resource is built as the class its resourceType names.
    r4 = R4Bundle(bundle, strict=True)
    assert [entry.resource.resource_type for entry in r4.entry] == [
        entry["resource"]["resourceType"] for entry in bundle["entry"]
    ]
    assert r4.as_json()["entry"][0]["resource"] == bundle["entry"][0]["resource"]
    assert parsed.type == "collection"
    resources = [entry["resource"] for entry in bundle["entry"]]
    for resource in resources:  # each entry as its own resource type, strictly
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    kinds = Counter(r["resourceType"] for r in resources)
    assert kinds["Patient"] == 1
    for kind in (
        "CarePlan",
        "MedicationAdministration",
        "MedicationRequest",
        "Communication",
        "Flag",
    ):
        assert kinds[kind] >= 1, kind

    urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(urls) == len(set(urls))
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", url) for url in urls)
    dangling = [ref for ref in references(resources) if ref not in set(urls)]
    assert not dangling

    patient = resources[0]
    assert patient["name"][0]["text"] == NAME
    assert patient["telecom"][0]["value"] == E164
    assert {"system": "urn:mab-companion:fhir:hospital-reference", "value": HOSPITAL_REF} in (
        patient["identifier"]
    )

    observations = [r for r in resources if r["resourceType"] == "Observation"]
    temperatures = [o for o in observations if o["code"]["coding"][0].get("code") == "8310-5"]
    stored = session.exec(
        select(func.count())
        .select_from(SymptomReport)
        .where(
            SymptomReport.patient_id == week.patient.id, SymptomReport.temperature_c.is_not(None)
        )
    ).one()
    assert len(temperatures) == stored > 0
    for t in temperatures:
        assert t["code"]["coding"][0]["system"] == LOINC
        assert (t["valueQuantity"]["system"], t["valueQuantity"]["code"]) == (UCUM, "Cel")
        assert t["category"][0]["coding"][0]["code"] == "vital-signs"
    assert any(t["valueQuantity"]["value"] == 38.6 for t in temperatures)
    labs = {
        o["code"]["coding"][0]["code"]: o["valueQuantity"]
        for o in observations
        if o["category"][0]["coding"][0]["code"] == "laboratory"
    }
    assert labs["30247-1"]["value"] == 1200.0 and labs["30247-1"]["code"] == "{copies}/mL"
    assert labs["24467-3"]["code"] == labs["751-8"]["code"] == "/uL"

    given = [r for r in resources if r["resourceType"] == "MedicationAdministration"]
    assert sorted(r["status"] for r in given) == ["completed", "not-done"]
    assert any(r.get("dosage", {}).get("dose", {}).get("code") == "mg" for r in given)
    requests = [r for r in resources if r["resourceType"] == "MedicationRequest"]
    assert {r["medicationCodeableConcept"]["text"] for r in requests} >= {
        "cotrimoxazole",
        "acyclovir",
    }
    for request in requests:
        if request["status"] == "active":
            assert request["dosageInstruction"][0]["timing"]["repeat"]["timeOfDay"] == [
                "08:00:00",
                "20:00:00",
            ]
    sms = [r for r in resources if r["resourceType"] == "Communication"]
    record = export_record(session, week.patient, clock.now)
    assert len(sms) == len(record["sms"]["outbound"]) + len(record["sms"]["inbound"])
    assert any(r.get("sender") for r in sms) and any(r.get("recipient") for r in sms)
    flags = [r for r in resources if r["resourceType"] == "Flag"]
    assert len(flags) == len(record["alerts"]) >= 2
    assert {f["status"] for f in flags} == {"active", "inactive"}


def text_values(app) -> list[tuple[str, str, str]]:
    """(table, column, text) of every non-empty value of every table the database has.

    The tables are reflected from the database itself (not the models), so a table or
    column the code forgot is searched too; JSON values are searched as their text.
    """
    engine = get_engine(app)
    metadata = MetaData()
    metadata.reflect(bind=engine)
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    if isinstance(value, dict | list):
                        value = json.dumps(value, ensure_ascii=False)
                    if isinstance(value, str) and value:
                        found.append((table.name, column, value))
    return found


def identifiers_in(values: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The values that contain the patient's name, number or hospital reference, or the
    name or number of her daughter (a family contact)."""
    words = [
        re.compile(rf"(?<!\w){re.escape(part)}(?!\w)", re.IGNORECASE)
        for part in (*NAME_PARTS, *FAMILY_NAME_PARTS)
    ]
    hits = []
    for table, column, value in values:
        digits = re.sub(r"\D", "", value)
        if (
            NSN in digits
            or FAMILY_NSN in digits
            or E164 in value
            or FAMILY_E164 in value
            or NATIONAL in value
            or HOSPITAL_REF.lower() in value.lower()
            or NAME in value
            or FAMILY_NAME in value
            or any(word.search(value) for word in words)
        ):
            hits.append((table, column, value))
    return hits


def counts(session: Session, patient_id: int) -> dict[str, int]:
    """How many clinical rows the patient has, per kind."""
    reread(session)
    return {
        model.__name__: session.exec(
            select(func.count()).select_from(model).where(model.patient_id == patient_id)
        ).one()
        for model in (LabResult, SymptomReport, InboundMessage, OutboundMessage)
    }


def test_erasure_stops_every_sms_and_leaves_no_identifier_in_the_database(
    app, session, clock, make_user, treated, twilio
) -> None:
    week = a_week_of_care(app, session, clock, make_user, treated, twilio)
    before = identifiers_in(text_values(app))
    # The week wrote them everywhere: the search finds what it is meant to find.
    assert {(table, column) for table, column, _ in before} >= {
        ("patient", "display_name"),
        ("patient", "phone"),
        ("patient", "hospital_ref"),
        ("outboundmessage", "body"),
        ("outboundmessage", "to_phone"),
        ("inboundmessage", "from_phone"),
        ("inboundmessage", "body"),
        ("labresult", "note"),
        ("doserecord", "note"),
        ("alert", "reason"),
        ("alert", "details"),
        ("alert", "resolution_note"),
        ("calendarfeed", "label"),
        ("familycontact", "name"),
        ("familycontact", "phone"),
    }
    # The daughter got the copy of the urgent advice (day 3's fever), and her own text
    # reached the team.
    assert any(
        (table, column) == ("outboundmessage", "to_phone") and FAMILY_E164 in value
        for table, column, value in before
    )
    assert twilio.bodies_to(FAMILY_E164)
    assert any(
        (table, column) == ("inboundmessage", "from_phone") and FAMILY_E164 in value
        for table, column, value in before
    )
    pages = session.exec(
        select(OutboundMessage).where(OutboundMessage.recipient == "clinician")
    ).all()
    assert any(HOSPITAL_REF in page.body for page in pages)
    pending = session.exec(
        select(func.count())
        .select_from(OutboundMessage)
        .where(
            OutboundMessage.patient_id == week.patient.id,
            OutboundMessage.status == OutboxStatus.PENDING,
        )
    ).one()
    assert pending > 0
    sent_before = len(twilio.bodies_to(E164))
    assert sent_before > 14  # a week of reminders and check-ins reached the phone
    kept = counts(session, week.patient.id)
    temperatures = sorted(
        t
        for t in session.exec(
            select(SymptomReport.temperature_c).where(SymptomReport.patient_id == week.patient.id)
        ).all()
        if t is not None
    )

    patient = session.get_one(Patient, week.patient.id)
    erasure = erase_contact_details(session, patient, clock.now)
    session.commit()

    assert erasure.cancelled_sms == pending
    assert not identifiers_in(text_values(app))
    reread(session)
    patient = session.get_one(Patient, week.patient.id)
    assert patient.display_name == patient.phone == patient.hospital_ref == erasure.pseudonym
    assert patient.erased_at == clock.now and not patient.sms_consent
    assert not session.exec(
        select(OutboundMessage).where(
            OutboundMessage.patient_id == week.patient.id,
            OutboundMessage.recipient == "patient",
            OutboundMessage.status == OutboxStatus.PENDING,
        )
    ).all()
    feeds = session.exec(select(CalendarFeed).where(CalendarFeed.patient_id == patient.id)).all()
    assert feeds and all(f.revoked_at is not None and f.label == "[erased]" for f in feeds)
    # The clinical record stays: the same rows, the same readings, the alerts and doses.
    assert counts(session, week.patient.id) == kept
    assert (
        sorted(
            t
            for t in session.exec(
                select(SymptomReport.temperature_c).where(SymptomReport.patient_id == patient.id)
            ).all()
            if t is not None
        )
        == temperatures
    )
    notes = session.exec(select(DoseRecord.note).where(DoseRecord.plan_id == week.plan.id)).all()
    assert sorted(notes) == [
        "Mme [erased] tolère bien",
        "[erased] absente, appelée au [erased]",
    ]

    # Three more days of planning and dispatch: nothing is planned or sent to the number
    # (the open fever alert still pages the team: those pages name "[erased]").
    to_patient = select(func.count()).where(
        OutboundMessage.patient_id == patient.id, OutboundMessage.recipient == "patient"
    )
    planned_before = session.exec(to_patient).one()
    run_passes(app, twilio, clock.now + timedelta(minutes=5), hours=72)
    assert len(twilio.bodies_to(E164)) == sent_before
    assert reread(session).exec(to_patient).one() == planned_before
    assert not identifiers_in(text_values(app))
