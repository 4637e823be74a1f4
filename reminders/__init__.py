"""Reminders: planning, SMS delivery and patient conversations, below the web.

``reminders.core`` is the pure core (no Flask, no database); ``reminders.data`` is the
data layer (tables, sessions, the services shared with the web); the other modules are
the engine, which uses both. Nothing here imports ``backend`` (``tests/test_layers.py``).
"""
