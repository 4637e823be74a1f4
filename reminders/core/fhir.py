"""A patient's record as a FHIR R4 Bundle: a pure mapping from the JSON export to FHIR dicts.

:func:`record_bundle` takes the plain record that ``backend.services.rights.export_record``
writes (format ``mab-companion/patient-record``, version 1; ``docs/data-protection.md``) and
returns a Bundle of type ``collection`` as JSON-ready dicts; nothing here reads a database
or imports a FHIR library (the tests validate the result with ``fhir.resources``).

Resources: Patient; Observation for each body temperature (LOINC 8310-5, UCUM ``Cel``,
category vital-signs), each lab result (LOINC where the test has a code, see
:data:`LAB_CODES`) and each symptom report (a local code); CarePlan for each regimen plan;
MedicationAdministration for each dose recorded (given or missed); MedicationRequest with
its Timing for each prophylaxis course; Communication for each SMS (to and from the
patient); Flag for each alert. Every entry's ``fullUrl`` is a ``urn:uuid`` derived from the
row (the same export gives the same ids) and every reference points inside the Bundle.
Codes of the companion's own vocabularies use :data:`LOCAL_SYSTEM` + a name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reminders.core.labs import LabKind
from reminders.core.regimens import UnknownRegimen, get_regimen

#: The export format this module reads (``backend.services.rights``).
RECORD_FORMAT = "mab-companion/patient-record"
RECORD_FORMAT_VERSION = 1

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: The base of the companion's own code systems and identifiers: stable, never resolved.
LOCAL_SYSTEM = "urn:mab-companion:fhir:"
#: Fixed namespace of the entries' uuids (uuid5 of the patient id, resource and row id).
_NAMESPACE = uuid.UUID("0b9f7a52-3c1e-4f55-9a63-8f1d2c6e7b40")

#: LOINC code, display and UCUM unit of each lab test the companion records.
LAB_CODES: dict[LabKind, tuple[str, str, str]] = {
    LabKind.CMV_PCR: (
        "30247-1",
        "Cytomegalovirus DNA [#/volume] (viral load) in Serum or Plasma by NAA with probe detection",
        "{copies}/mL",
    ),
    LabKind.CD4: ("24467-3", "CD3+CD4+ (T4 helper) cells [#/volume] in Blood", "/uL"),
    LabKind.ANC: ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "/uL"),
}
BODY_TEMPERATURE = ("8310-5", "Body temperature")

#: Outbox statuses (``reminders.data.statuses.OutboxStatus`` values) as Communication statuses.
SMS_STATUS = {
    "pending": "preparation",
    "sending": "in-progress",
    "unconfirmed": "in-progress",
    "sent": "completed",
    "delivered": "completed",
    "undelivered": "stopped",
    "failed": "stopped",
    "missed": "not-done",
    "cancelled": "not-done",
}
#: Prophylaxis course statuses as MedicationRequest statuses.
COURSE_STATUS = {
    "proposed": "draft",
    "active": "active",
    "stopped": "stopped",
    "declined": "cancelled",
}
#: Plan statuses as CarePlan statuses.
PLAN_STATUS = {"active": "active", "on_hold": "on-hold", "stopped": "revoked"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def local(name: str) -> str:
    """The URI of the companion's own code system or identifier ``name``."""
    return LOCAL_SYSTEM + name


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    return coding | ({"display": display} if display else {})


def _concept(*codings: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    return {"coding": list(codings)} | ({"text": text} if text else {})


def _drop_empty(resource: dict[str, Any]) -> dict[str, Any]:
    """FHIR refuses empty values: leave out None, empty strings, lists and objects."""
    return {k: v for k, v in resource.items() if v not in (None, "", [], {})}


class _Entries:
    """The Bundle's entries, each with a stable ``urn:uuid`` and a reference to it."""

    def __init__(self, patient_id: int) -> None:
        self.patient_id = patient_id
        self.entries: list[dict[str, Any]] = []

    def url(self, resource_type: str, row_id: Any) -> str:
        name = f"{self.patient_id}/{resource_type}/{row_id}"
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, name)}"

    def ref(self, resource_type: str, row_id: Any) -> dict[str, str]:
        return {"reference": self.url(resource_type, row_id)}

    def add(self, resource_type: str, row_id: Any, resource: dict[str, Any]) -> None:
        url = self.url(resource_type, row_id)
        body = {"resourceType": resource_type, "id": url.removeprefix("urn:uuid:")}
        self.entries.append({"fullUrl": url, "resource": body | _drop_empty(resource)})


@dataclass(frozen=True)
class _Context:
    """What a row's resource points to: the patient, the other entries, the plans by id."""

    subject: dict[str, str]
    entries: _Entries
    plans: Mapping[int, Mapping[str, Any]]


#: Maps one row of the record to its resource.
_RowMapper = Callable[[Mapping[str, Any], _Context], dict[str, Any]]


def record_bundle(record: Mapping[str, Any]) -> dict[str, Any]:
    """The FHIR R4 Bundle (``collection``) of a patient's exported ``record``."""
    if (
        record.get("format") != RECORD_FORMAT
        or record.get("format_version") != RECORD_FORMAT_VERSION
    ):
        raise ValueError(f"not a {RECORD_FORMAT} record of version {RECORD_FORMAT_VERSION}")
    patient = record["patient"]
    entries = _Entries(patient["id"])
    subject = entries.ref("Patient", patient["id"])
    entries.add("Patient", patient["id"], patient_resource(patient))
    plans = {plan["id"]: plan for plan in record.get("plans", [])}
    context = _Context(subject, entries, plans)
    for section, resource_type, id_prefix, resource_of in _ROW_RESOURCES:
        for row in record.get(section, []):
            entries.add(resource_type, f"{id_prefix}{row['id']}", resource_of(row, context))
    for report in record.get("symptom_reports", []):
        for observation_id, observation in _report_observations(report, context):
            entries.add("Observation", observation_id, observation)
    for direction, messages in (record.get("sms") or {}).items():
        for message in messages:
            entries.add(
                "Communication",
                f"{direction}-{message['id']}",
                communication(message, direction, subject),
            )
    return {
        "resourceType": "Bundle",
        "identifier": {"system": local("export"), "value": record["export_id"]},
        "type": "collection",
        "timestamp": record["exported_at"],
        "entry": entries.entries,
    }


def patient_resource(patient: Mapping[str, Any]) -> dict[str, Any]:
    """The Patient: identifiers, name, mobile phone, language; inactive once discharged."""
    identifiers = [{"system": local("patient-id"), "value": str(patient["id"])}]
    if patient.get("hospital_ref"):
        identifiers.append(
            {"system": local("hospital-reference"), "value": patient["hospital_ref"]}
        )
    return {
        "identifier": identifiers,
        "active": patient.get("discharged_at") is None,
        "name": [{"text": patient["display_name"]}],
        "telecom": [{"system": "phone", "value": patient["phone"], "use": "mobile"}],
        "communication": [
            {
                "language": _concept(_coding("urn:ietf:bcp:47", patient["language"])),
                "preferred": True,
            }
        ],
    }


def _drug(regimen_id: str) -> str:
    try:
        return get_regimen(regimen_id).drug
    except UnknownRegimen:
        return regimen_id


def _care_plan(plan: Mapping[str, Any], context: _Context) -> dict[str, Any]:
    return {
        "identifier": [{"system": local("plan-id"), "value": str(plan["id"])}],
        "status": PLAN_STATUS.get(plan["status"], "unknown"),
        "intent": "plan",
        "title": f"{_drug(plan['regimen_id'])} ({plan['regimen_id']})",
        "description": plan.get("stop_reason"),
        "subject": context.subject,
        "period": _drop_empty({"start": plan["start_date"], "end": plan.get("stopped_on")}),
        "created": plan.get("created_at"),
    }


def _administration(dose: Mapping[str, Any], context: _Context) -> dict[str, Any]:
    plan = context.plans.get(dose["plan_id"])
    given = dose["status"] == "given"
    dosage = (
        {"dose": _quantity(dose["dose_mg"], "mg")}
        if given and dose.get("dose_mg") is not None
        else None
    )
    return {
        "status": "completed" if given else "not-done",
        "medicationCodeableConcept": {
            "text": _drug(plan["regimen_id"]) if plan else "monoclonal antibody"
        },
        "subject": context.subject,
        "effectiveDateTime": dose["on_date"],
        "supportingInformation": [context.entries.ref("CarePlan", plan["id"])] if plan else None,
        "note": [{"text": dose["note"]}] if dose.get("note") else None,
        "dosage": dosage,
    }


def timing(course: Mapping[str, Any]) -> dict[str, Any]:
    """A course's pill times as a FHIR Timing: times of day, weekdays, from its start."""
    times = [f"{t}:00" if len(t) == 5 else t for t in course.get("times") or []]
    repeat: dict[str, Any] = {
        "boundsPeriod": _drop_empty(
            {"start": course["start_date"], "end": course.get("stopped_on")}
        ),
        "timeOfDay": times,
    }
    if course.get("weekdays"):
        repeat["dayOfWeek"] = [WEEKDAYS[day] for day in sorted(course["weekdays"])]
    return {"repeat": _drop_empty(repeat)}


def _medication_request(course: Mapping[str, Any], context: _Context) -> dict[str, Any]:
    status = COURSE_STATUS.get(course["status"], "unknown")
    instruction = _drop_empty({"text": course.get("dose_text"), "timing": timing(course)})
    return {
        "status": status,
        "intent": "proposal" if status == "draft" else "order",
        "medicationCodeableConcept": {"text": course["drug"]},
        "subject": context.subject,
        "authoredOn": course.get("created_at"),
        "basedOn": [context.entries.ref("CarePlan", course["plan_id"])]
        if course.get("plan_id") in context.plans
        else None,
        "note": [
            {"text": text}
            for text in (course.get("stop_note"), course.get("decline_reason"))
            if text
        ],
        "dosageInstruction": [instruction],
    }


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _category(code: str) -> list[dict[str, Any]]:
    return [_concept(_coding(OBSERVATION_CATEGORY, code))]


def _lab_observation(lab: Mapping[str, Any], context: _Context) -> dict[str, Any]:
    codings = [_coding(local("lab"), lab["kind"])]
    # The unit as entered; its UCUM code only for a test with a LOINC code here.
    value: dict[str, Any] = {"value": lab["value"], "unit": lab["unit"]}
    if lab["kind"] in LAB_CODES:
        loinc, display, ucum = LAB_CODES[LabKind(lab["kind"])]
        codings.insert(0, _coding(LOINC, loinc, display))
        value |= {"system": UCUM, "code": ucum}
    return {
        "status": "final",
        "category": _category("laboratory"),
        "code": _concept(*codings, text=lab["kind"]),
        "subject": context.subject,
        "effectiveDateTime": lab["taken_at"],
        "issued": lab.get("recorded_at"),
        "valueQuantity": value,
        "note": [{"text": lab["note"]}] if lab.get("note") else None,
    }


def _report_observations(
    report: Mapping[str, Any], context: _Context
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A symptom report's Observation, after its body temperature's when one was given."""
    temperature_id = f"temperature-{report['id']}"
    if report.get("temperature_c") is not None:
        yield (
            temperature_id,
            {
                "status": "final",
                "category": _category("vital-signs"),
                "code": _concept(_coding(LOINC, *BODY_TEMPERATURE), text="Body temperature"),
                "subject": context.subject,
                "effectiveDateTime": report["reported_at"],
                "valueQuantity": _quantity(report["temperature_c"], "Cel"),
            },
        )
    yield (
        f"report-{report['id']}",
        {
            "status": "final",
            "category": _category("survey"),
            "code": _concept(
                _coding(local("observation"), "symptom-report"), text="Symptom report"
            ),
            "subject": context.subject,
            "effectiveDateTime": report["reported_at"],
            "valueString": report["summary"] or report["severity"],
            "interpretation": [_concept(_coding(local("severity"), report["severity"]))],
            "hasMember": [context.entries.ref("Observation", temperature_id)]
            if report.get("temperature_c") is not None
            else None,
            "component": [
                {
                    "code": _concept(_coding(local("symptom"), symptom)),
                    "valueBoolean": True,
                }
                for symptom in report.get("symptoms") or []
            ],
        },
    )


def communication(
    message: Mapping[str, Any], direction: str, subject: dict[str, str]
) -> dict[str, Any]:
    """One SMS as a Communication: ``outbound`` to the patient, ``inbound`` from them."""
    outbound = direction == "outbound"
    return {
        "status": SMS_STATUS.get(message.get("status", ""), "unknown") if outbound else "completed",
        "category": [_concept(_coding(local("sms-kind"), message.get("kind") or "reply"))]
        if outbound
        else None,
        "subject": subject,
        "sent": message.get("sent_at") if outbound else message.get("received_at"),
        "received": message.get("received_at") if not outbound else message.get("delivered_at"),
        "recipient": [subject] if outbound else None,
        "sender": subject if not outbound else None,
        "payload": [{"contentString": message["body"]}] if message.get("body") else None,
    }


def _flag(alert: Mapping[str, Any], context: _Context) -> dict[str, Any]:
    return {
        "status": "inactive" if alert["status"] == "resolved" else "active",
        "category": [_concept(_coding(local("alert-severity"), alert["severity"]))],
        "code": _concept(_coding(local("alert-kind"), alert["kind"]), text=alert["reason"]),
        "subject": context.subject,
        "period": _drop_empty({"start": alert["created_at"], "end": alert.get("resolved_at")}),
    }


def _related_person(contact: Mapping[str, Any], context: _Context) -> dict[str, Any]:
    """A family contact: active while the patient's consent holds and they did not STOP."""
    return {
        "active": contact.get("consent_withdrawn_at") is None
        and contact.get("opted_out_at") is None,
        "patient": context.subject,
        "relationship": [{"text": contact["relationship"]}],
        "name": [{"text": contact["name"]}],
        "telecom": [{"system": "phone", "value": contact["phone"], "use": "mobile"}],
        "communication": [{"language": _concept(_coding("urn:ietf:bcp:47", contact["language"]))}],
    }


#: The sections of the record with one resource a row: the section, the resource type, the
#: prefix of the entry's id (labs and reports are both Observations: their row ids may
#: meet) and the mapper. Symptom reports, with their temperatures, are mapped apart.
_ROW_RESOURCES: tuple[tuple[str, str, str, _RowMapper], ...] = (
    ("plans", "CarePlan", "", _care_plan),
    ("doses", "MedicationAdministration", "", _administration),
    ("prophylaxis_courses", "MedicationRequest", "", _medication_request),
    ("labs", "Observation", "lab-", _lab_observation),
    ("alerts", "Flag", "", _flag),
    ("family_contacts", "RelatedPerson", "", _related_person),
)
