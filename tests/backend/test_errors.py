"""Service refusals are plain exceptions; the web alone decides their HTTP status."""

from __future__ import annotations

import pytest

from backend.errors import HTTP_STATUS, http_status
from reminders.data.errors import Conflict, InvalidInput, NotFound, ServiceError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ServiceError("Le numéro de Marie-Françoise est refusé"), 400),
        (NotFound("patient not found"), 404),
        (Conflict("plan is stopped", field="status"), 409),
        (InvalidInput("unknown regimen", field="regimen_id"), 422),
    ],
)
def test_each_refusal_has_its_status(error: ServiceError, status: int) -> None:
    assert http_status(error) == status


def test_a_new_refusal_takes_its_nearest_base_status() -> None:
    class PlanAlreadyStopped(Conflict):
        code = "already_stopped"

    error = PlanAlreadyStopped("plan is stopped", field="status")
    assert PlanAlreadyStopped not in HTTP_STATUS
    assert http_status(error) == 409
    assert error.to_dict() == {
        "error": "already_stopped",
        "message": "plan is stopped",
        "field": "status",
    }


def test_service_errors_carry_no_http_status() -> None:
    # The status belongs to the web layer: the data layer's classes know only codes.
    for kind in (ServiceError, NotFound, Conflict, InvalidInput):
        assert not hasattr(kind, "status")
        assert kind.__module__ == "reminders.data.errors"
