"""iCalendar text (RFC 5545), written by hand: a calendar of timed events, nothing more.

Only what a subscribed phone calendar needs, so no library is needed to write it:

* lines end with CRLF (3.1) and are folded at 75 octets, never inside a UTF-8 sequence;
  a continuation line starts with one space (3.1);
* TEXT values escape backslash, semicolon, comma and line breaks (3.3.11);
* times are UTC (``19980119T070000Z``, 3.3.5 form 2), so no VTIMEZONE is needed and the
  phone shows each event in its own zone;
* each event has a caller-given UID, stable across fetches, so that a calendar app
  updates a moved dose instead of adding a second one (3.8.4.7).

The tests read the output back with the ``icalendar`` package, an independent parser.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["CalendarEvent", "escape_text", "fold", "format_utc", "ical_document"]

#: RFC 5545 3.1: "Lines of text SHOULD NOT be longer than 75 octets, excluding the line break."
MAX_LINE_OCTETS = 75
CRLF = "\r\n"
PRODID = "-//mAb companion//Treatment calendar//EN"


@dataclass(frozen=True)
class CalendarEvent:
    """One VEVENT: a stable ``uid``, a UTC start, a length, a summary and a description."""

    uid: str
    start_utc: datetime
    duration: timedelta
    summary: str
    description: str = ""


def escape_text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): ``\\``, ``;``, ``,`` escaped, line breaks as ``\\n``."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n")


def fold(line: str) -> str:
    """``line`` folded into pieces of at most 75 octets each, joined by CRLF and a space.

    The continuation's leading space counts in its 75 octets. A character is never cut:
    the UTF-8 bytes of "é" stay on one line (a parser would otherwise see broken text).
    """
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    limit = MAX_LINE_OCTETS
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            pieces.append("".join(current))
            current, size, limit = [], 0, MAX_LINE_OCTETS - 1  # the space takes one octet
        current.append(char)
        size += width
    pieces.append("".join(current))
    return (CRLF + " ").join(pieces)


def format_utc(moment: datetime) -> str:
    """A DATE-TIME in UTC (RFC 5545 3.3.5, form 2): ``20260302T080000Z``."""
    if moment.tzinfo is None:
        raise ValueError("an iCalendar time needs a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def format_duration(length: timedelta) -> str:
    """A DURATION (RFC 5545 3.3.6) of whole minutes: ``PT30M``, ``PT2H``, ``PT1H30M``."""
    minutes = int(length.total_seconds() // 60)
    if minutes <= 0:
        raise ValueError("an event lasts at least one minute")
    hours, minutes = divmod(minutes, 60)
    return "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")


def ical_document(
    events: Iterable[CalendarEvent],
    *,
    name: str,
    stamp: datetime,
    refresh: timedelta,
) -> str:
    """A VCALENDAR of ``events``, CRLF-terminated and folded.

    ``stamp`` is every event's DTSTAMP: without a METHOD, RFC 5545 3.8.7.2 reads it as
    the time the information was last revised, which for a feed built on request is the
    time of the request. ``refresh`` is how often the publisher suggests the calendar be
    fetched again (RFC 7986 REFRESH-INTERVAL, and the X-PUBLISHED-TTL older apps read).
    """
    dtstamp = format_utc(stamp)
    every = format_duration(refresh)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        f"NAME:{escape_text(name)}",
        f"X-WR-CALNAME:{escape_text(name)}",
        f"REFRESH-INTERVAL;VALUE=DURATION:{every}",
        f"X-PUBLISHED-TTL:{every}",
    ]
    for event in events:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{escape_text(event.uid)}",
            f"DTSTAMP:{dtstamp}",
            f"DTSTART:{format_utc(event.start_utc)}",
            f"DURATION:{format_duration(event.duration)}",
            f"SUMMARY:{escape_text(event.summary)}",
        ]
        if event.description:
            lines.append(f"DESCRIPTION:{escape_text(event.description)}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + CRLF for line in lines)
