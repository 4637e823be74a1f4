"""Service functions: small units of work over a session, with ``now`` passed in.

Routes, CLI commands and scheduled jobs call these; these call the pure core in
``reminders.core``. A service function never commits: its caller owns the
transaction, so a failed step leaves nothing half-written.
"""
