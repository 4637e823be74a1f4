"""The escalation policy and response-time targets as data, and the pure "which step is due?".

An urgent alert is paged step by step (``escalation.toml``: SMS to the rota's primary at
once, a call at 5 minutes, the backup at 10, the team's fallback number at 15) until a
human acknowledges it; after the last step its targets are paged again every
``repeat_every_minutes``. A team may keep its own policy and targets (JSON on the team
row); :func:`policy_from_dict` and :func:`targets_from_dict` validate them and name the
field they refuse.

Pure: no database, no clock; the engine (``reminders.escalation``) passes the alert's
times in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from reminders.core.datafiles import read_toml

__all__ = [
    "CHANNELS",
    "TARGETS",
    "EscalationPolicy",
    "EscalationStep",
    "PolicyError",
    "ResponseTargets",
    "default_policy",
    "default_targets",
    "policy_from_dict",
    "policy_to_dict",
    "step_due_at",
    "step_of",
    "steps_due",
    "targets_from_dict",
    "targets_to_dict",
]

_FILE = Path(__file__).with_name("escalation.toml")

#: Who a step may page, in the order a missing one falls through to the next.
TARGETS = ("primary", "backup", "fallback")
CHANNELS = ("sms", "voice")
#: A step later than this is a typo, not a policy (an urgent alert waits for nobody).
_MAX_STEP_MINUTES = 24 * 60


class PolicyError(ValueError):
    """A policy or targets document that cannot be used; the message names the field."""


@dataclass(frozen=True)
class EscalationStep:
    """Page ``target`` on ``channels`` once the alert has waited ``after_minutes`` unacknowledged."""

    after_minutes: int
    target: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class EscalationPolicy:
    """The steps in time order, and how often the last one repeats."""

    steps: tuple[EscalationStep, ...]
    repeat_every_minutes: int
    source: str = ""


@dataclass(frozen=True)
class ResponseTargets:
    """How fast the team means to acknowledge (per severity) and close alerts, in minutes."""

    urgent_acknowledge_minutes: int
    high_acknowledge_minutes: int
    resolve_minutes: int
    source: str = ""

    def acknowledge_minutes(self, severity: str) -> int | None:
        """The acknowledgement target of ``severity``; None for a severity without one."""
        return {
            "urgent": self.urgent_acknowledge_minutes,
            "high": self.high_acknowledge_minutes,
        }.get(severity)


def _whole_minutes(value: Any, field: str, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{field} must be a whole number of minutes")
    if not minimum <= value <= maximum:
        raise PolicyError(f"{field} must be between {minimum} and {maximum} minutes")
    return value


def policy_from_dict(data: Mapping[str, Any], *, source: str = "") -> EscalationPolicy:
    """An :class:`EscalationPolicy` from its JSON/TOML form; :class:`PolicyError` names what is wrong.

    Rules: at least one step; the first step at 0 minutes (an urgent alert is paged at
    once); steps in increasing time; each step one target of :data:`TARGETS` and one or
    more channels of :data:`CHANNELS`, no channel twice.
    """
    if not isinstance(data, Mapping):
        raise PolicyError("the policy must be an object")
    unknown = set(data) - {"steps", "repeat_every_minutes", "source"}
    if unknown:
        raise PolicyError(f"unknown field: {sorted(unknown)[0]}")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise PolicyError("steps must be a non-empty list")
    if len(raw_steps) > 10:
        raise PolicyError("steps: at most 10")
    steps: list[EscalationStep] = []
    for index, raw in enumerate(raw_steps):
        where = f"steps[{index}]"
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{where} must be an object")
        extra = set(raw) - {"after_minutes", "target", "channels"}
        if extra:
            raise PolicyError(f"{where}: unknown field {sorted(extra)[0]}")
        after = _whole_minutes(
            raw.get("after_minutes"), f"{where}.after_minutes", minimum=0, maximum=_MAX_STEP_MINUTES
        )
        target = raw.get("target")
        if target not in TARGETS:
            raise PolicyError(f"{where}.target must be one of {', '.join(TARGETS)}")
        channels = raw.get("channels")
        if (
            not isinstance(channels, list)
            or not channels
            or any(channel not in CHANNELS for channel in channels)
            or len(set(channels)) != len(channels)
        ):
            raise PolicyError(f"{where}.channels must list sms and/or voice, each once")
        if index == 0 and after != 0:
            raise PolicyError("steps[0].after_minutes must be 0: an urgent alert is paged at once")
        if steps and after <= steps[-1].after_minutes:
            raise PolicyError(f"{where}.after_minutes must be later than the step before")
        steps.append(EscalationStep(after, target, tuple(channels)))
    repeat = _whole_minutes(
        data.get("repeat_every_minutes"), "repeat_every_minutes", minimum=1, maximum=240
    )
    return EscalationPolicy(tuple(steps), repeat, str(data.get("source") or source))


def policy_to_dict(policy: EscalationPolicy) -> dict[str, Any]:
    """The JSON form of ``policy`` (what a team stores and the API shows)."""
    return {
        "steps": [
            {"after_minutes": s.after_minutes, "target": s.target, "channels": list(s.channels)}
            for s in policy.steps
        ],
        "repeat_every_minutes": policy.repeat_every_minutes,
    }


def targets_from_dict(data: Mapping[str, Any], *, source: str = "") -> ResponseTargets:
    """:class:`ResponseTargets` from their JSON/TOML form; :class:`PolicyError` names what is wrong."""
    if not isinstance(data, Mapping):
        raise PolicyError("the targets must be an object")
    fields = ("urgent_acknowledge_minutes", "high_acknowledge_minutes", "resolve_minutes")
    unknown = set(data) - {*fields, "source"}
    if unknown:
        raise PolicyError(f"unknown field: {sorted(unknown)[0]}")
    values = {
        name: _whole_minutes(data.get(name), name, minimum=1, maximum=30 * 24 * 60)
        for name in fields
    }
    return ResponseTargets(**values, source=str(data.get("source") or source))


def targets_to_dict(targets: ResponseTargets) -> dict[str, int]:
    """The JSON form of ``targets`` (without the source)."""
    values = asdict(targets)
    values.pop("source")
    return values


@cache
def _defaults() -> dict[str, Any]:
    return read_toml(_FILE)


@cache
def default_policy() -> EscalationPolicy:
    """The policy of ``escalation.toml`` (validated like a team's own)."""
    return policy_from_dict(_defaults()["policy"])


@cache
def default_targets() -> ResponseTargets:
    """The response-time targets of ``escalation.toml``."""
    return targets_from_dict(_defaults()["targets"])


def step_due_at(policy: EscalationPolicy, created_at: datetime, step: int) -> datetime:
    """When step number ``step`` (0-based; past the last, its repeats) falls due."""
    last = len(policy.steps) - 1
    if step <= last:
        return created_at + timedelta(minutes=policy.steps[step].after_minutes)
    repeats = step - last
    return created_at + timedelta(
        minutes=policy.steps[last].after_minutes + repeats * policy.repeat_every_minutes
    )


def step_of(policy: EscalationPolicy, step: int) -> EscalationStep:
    """The step to page for step number ``step``: past the last, the last one again."""
    return policy.steps[min(step, len(policy.steps) - 1)]


def steps_due(
    policy: EscalationPolicy, created_at: datetime, steps_taken: int, now: datetime
) -> list[int]:
    """The step numbers due at ``now`` for an unacknowledged alert that took ``steps_taken``.

    After an outage several steps may be due at once: all are returned (a late backup
    page is still better than none), and a repeat of the last step only once.
    """
    due: list[int] = []
    step = steps_taken
    while step_due_at(policy, created_at, step) <= now:
        due.append(step)
        if step >= len(policy.steps) - 1:
            break
        step += 1
    return due
