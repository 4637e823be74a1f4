"""``flask reminders clock``: its timing options are checked before anything starts."""

from __future__ import annotations


def test_the_clock_refuses_a_renewal_too_rare_for_its_lease(app) -> None:
    result = app.test_cli_runner().invoke(
        args=["reminders", "clock", "--lease", "4", "--renew", "2", "--poll", "0.5"]
    )
    assert result.exit_code == 1
    assert "need 0 < 2 x renew < lease and poll > 0, got lease 4 s, renew 2 s" in result.output
