"""Reminders: planning, SMS delivery and patient conversations.

``reminders.core`` is the pure core (no Flask, no database); the other modules
are thin services and processes that call it.
"""
