"""Hostile values, and where to put them: every route of the URL map and of the OpenAPI document.

A route is found, never listed by hand: the API's operations come from the OpenAPI
document (each property of each body, each query parameter, typed by its schema), the
pages' and webhooks' from the URL map. A new route or field is attacked without anyone
adding it here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: The kinds of hostile value, for a string, a date and a date-time field.
HOSTILE: dict[str, dict[str, str]] = {
    "nul": {"string": "38,9\x00 Lefèvre", "date": "2026-03-02\x00", "date-time": "\x00"},
    "control": {"string": "Van den Bossche\x1b[2J\x7f\x85", "date": "\x08", "date-time": "\x0c"},
    "crlf": {
        "string": "Marie\r\nSet-Cookie: session=stolen",
        "date": "2026-03-02\r\n",
        "date-time": "2026-03-01T08:00:00+01:00\r\nX: y",
    },
    "year-1": {
        "string": "0001-01-01",
        "date": "0001-01-01",
        "date-time": "0001-01-01T00:00:00+00:00",
    },
    "year-9999": {
        "string": "9999-12-31",
        "date": "9999-12-31",
        "date-time": "9999-12-31T23:59:59-12:00",
    },
}

#: Bodies that succeed for the owning team, keyed by OpenAPI path and method: one hostile
#: property at a time is put into them, so that only that property can be refused.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/patients", "post"): {
        "display_name": "Marie-Françoise Van den Bossche-Lefèvre",
        "phone": "+32 470 55 66 77",
        "timezone": "Europe/Brussels",
        "language": "fr",
        "hospital_ref": "UZ-2026-00417",
    },
    ("/api/v1/patients/{patient_id}", "patch"): {"hospital_ref": "UZ-2026-00418"},
    ("/api/v1/patients/{patient_id}/labs", "post"): {
        "kind": "anc",
        "value": 1500,
        "taken_at": "2026-03-01T08:00:00+01:00",
        "note": "prélèvement du matin",
    },
    ("/api/v1/patients/{patient_id}/prophylaxis", "post"): {
        "drug": "valacyclovir",
        "dose_text": "500 mg twice a day",
        "times": ["08:00", "20:00"],
        "start_date": "2026-03-02",
    },
    ("/api/v1/patients/{patient_id}/plans", "post"): {
        "regimen_id": "rituximab_fl_weekly",
        "start_date": "2026-03-09",
    },
    ("/api/v1/plans/{plan_id}/hold", "post"): {"reason": "neutropenia, ANC 0.4"},
    ("/api/v1/plans/{plan_id}/resume", "post"): {"resume_date": "2026-03-20"},
    ("/api/v1/plans/{plan_id}/extend", "post"): {"weeks": 1},
    ("/api/v1/plans/{plan_id}/stop", "post"): {"reason": "progression", "stopped_on": "2026-04-01"},
    ("/api/v1/plans/{plan_id}/doses/{index}", "post"): {
        "status": "missed",
        "on_date": "2026-03-04",
        "note": "patiente hospitalisée",
    },
    ("/api/v1/alerts/{alert_id}/resolve", "post"): {"note": "appelée, valganciclovir débuté"},
    ("/api/v1/prophylaxis/{course_id}/stop", "post"): {"override_reason": "team decision"},
    ("/api/v1/prophylaxis/{course_id}/confirm", "post"): {
        "dose_text": "960 mg three times a week",
        "times": ["08:00"],
        "start_date": "2026-03-02",
    },
    ("/api/v1/patients/{patient_id}/expected-levels", "post"): {
        "up_to_c": 37.8,
        "expires_at": "2026-03-02T20:00:00+01:00",
        "reason": "perfusion de rituximab ce matin",
    },
    ("/api/v1/prophylaxis/{course_id}/decline", "post"): {
        "reason": "allergic to cotrimoxazole: pentamidine inhalation"
    },
    # User 2 is the ward's nurse (the fixture's second user), who has a phone.
    ("/api/v1/oncall/shifts", "post"): {
        "user_id": 2,
        "role": "backup",
        "starts_at": "2026-03-29T02:30",
        "ends_at": "2026-03-29T08:00",
    },
    ("/api/v1/oncall/shifts/{shift_id}", "patch"): {"ends_at": "2026-03-03T21:00"},
    ("/api/v1/oncall/policy", "put"): {
        "steps": [
            {"after_minutes": 0, "target": "primary", "channels": ["sms"]},
            {"after_minutes": 15, "target": "fallback", "channels": ["sms", "voice"]},
        ],
        "repeat_every_minutes": 15,
    },
    ("/api/v1/me", "patch"): {"phone": "+32 470 55 44 33", "language": "nl"},
}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _branches(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(document, schema)
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return [_resolve(document, option) for option in options]


def hostile_for(document: dict[str, Any], schema: dict[str, Any], kind: str) -> Any:
    """A hostile value of ``kind`` shaped like ``schema`` (a list for an array), or None.

    None: the property holds no text (a number, a boolean): nothing to put in it here.
    """
    for branch in _branches(document, schema):
        if branch.get("type") == "string":
            return HOSTILE[kind].get(branch.get("format", "string"), HOSTILE[kind]["string"])
        if branch.get("type") == "array":
            inner = hostile_for(document, branch.get("items", {}), kind)
            if inner is not None:
                return [inner]
        if branch.get("type") == "object" or branch.get("additionalProperties"):
            return {HOSTILE[kind]["string"]: HOSTILE[kind]["string"]}
    return None


def api_attacks(document: dict[str, Any]) -> Iterator[tuple[str, str, str, dict, Any]]:
    """(method, path template, what, query, body) for every property and query parameter.

    Each attack puts one hostile value in an otherwise valid request.
    """
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            base = VALID_BODIES.get((path, method), {})
            body_ref = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema")
            )
            for kind in HOSTILE:
                for parameter in operation.get("parameters", []):
                    if parameter["in"] != "query":
                        continue
                    value = hostile_for(document, parameter.get("schema", {}), kind)
                    if isinstance(value, str):
                        query = {parameter["name"]: value}
                        yield method, path, f"{kind} in ?{parameter['name']}", query, base or None
                if body_ref is None:
                    continue
                properties = _resolve(document, body_ref).get("properties", {})
                for name, schema in properties.items():
                    value = hostile_for(document, schema, kind)
                    if value is not None:
                        yield method, path, f"{kind} in {name}", {}, {**base, name: value}
