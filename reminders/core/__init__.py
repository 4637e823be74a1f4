"""The pure core: clinical rules, regimens, planner, reply parser, triage and templates.

Nothing in this package imports Flask, SQLAlchemy, SQLModel or ``backend``;
``tests/reminders/test_core_purity.py`` checks that. Everything here takes plain
values (dates, times, numbers, strings) and returns plain values, so it can be
tested exhaustively and reused by the API, the scheduler and the site builder.
"""
