"""The id every log line of a unit of work carries: a web request's or a job run's.

One :class:`~contextvars.ContextVar` holds it, so that the log formatter (in the web
layer, :mod:`backend.logs`) can add it to each line without the code that logs passing
it along. The web app sets a request id per request; the clock's jobs
(:func:`reminders.jobs._in_session`) and each dispatcher pass set a job id. It lives
here, below the web, because the engine never imports Flask: the engine sets ids, the
web's formatter reads them.

A thread does not inherit the id of the thread that started it: a pool's threads adopt
it with :func:`adopt` as their initializer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import NamedTuple


class LogId(NamedTuple):
    """What a line belongs to: ``kind`` ("request" or "job") and the id itself."""

    kind: str
    value: str


_current: ContextVar[LogId | None] = ContextVar("log_id", default=None)


def current_id() -> LogId | None:
    """The id of the request or job run in this context, or None outside one."""
    return _current.get()


def new_id(prefix: str = "") -> str:
    """A fresh id (``prefix`` then 32 hex digits), unique enough to find one run's lines."""
    return f"{prefix}{uuid.uuid4().hex}"


def enter(kind: str, value: str) -> Token[LogId | None]:
    """Make ``value`` the current id of kind ``kind``; give the token to :func:`leave`."""
    return _current.set(LogId(kind, value))


def leave(token: Token[LogId | None]) -> None:
    """Restore the id that was current before :func:`enter` returned ``token``.

    A WSGI server may close a response in another context than the one that started it;
    then there is nothing to restore there, and the id is simply cleared.
    """
    try:
        _current.reset(token)
    except ValueError:
        _current.set(None)


@contextmanager
def job_id(job: str) -> Iterator[str]:
    """A new job id for one run of ``job`` (``"<job>-<hex>"``), current inside the block."""
    value = new_id(f"{job}-")
    token = enter("job", value)
    try:
        yield value
    finally:
        leave(token)


def adopt(log_id: LogId | None) -> None:
    """Make ``log_id`` this thread's id: a pool's ``initializer``, given the parent's id."""
    _current.set(log_id)
