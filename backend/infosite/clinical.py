"""The clinical values the site quotes, taken from ``reminders.core.clinical_rules``.

Pages never write the fever threshold or the urgent advice themselves: they use
placeholders such as ``{{ urgent_advice }}`` or ``{{ fever }}``, and the
builder fills them from here. So the site, the SMS templates and the triage
rules quote one source of truth, and a clinician who changes
``clinical_rules.toml`` or ``advice.toml`` changes the site too.
"""

from __future__ import annotations

from reminders.core.clinical_rules import (
    LANGUAGES,
    clinical_rules,
    emergency_fallback,
    urgent_advice,
)
from reminders.core.red_flags import red_flags, site_wording
from reminders.core.regions import temperature_text
from reminders.core.templates import get_template

__all__ = ["LANGUAGES", "format_number", "placeholder_values"]

# Placeholders whose value is a whole sentence; the renderer marks the urgent one
# so that tests and styles can find it.
SENTENCE_PLACEHOLDERS = frozenset({"urgent_advice", "emergency_fallback"})
#: ``{{ red_flag_<id> }}``: a line of the "call now" list, word for word from red_flags.toml.
RED_FLAG_PREFIX = "red_flag_"

_HOURS = {"en": ("hour", "hours"), "fr": ("heure", "heures"), "nl": ("uur", "uur")}
_MINUTES = {"en": ("minute", "minutes"), "fr": ("minute", "minutes"), "nl": ("minuut", "minuten")}


def format_number(value: float, language: str, decimals: int | None = None) -> str:
    """Write ``value`` as readers of ``language`` expect (decimal comma in fr and nl)."""
    text = f"{value:.{decimals}f}" if decimals is not None else f"{value:g}"
    return text.replace(".", ",") if language in ("fr", "nl") else text


def format_duration(minutes: int, language: str) -> str:
    """Say a number of minutes in words: ``120`` is "2 hours", ``15`` is "15 minutes"."""
    if minutes % 60 == 0:
        count, names = minutes // 60, _HOURS[language]
    else:
        count, names = minutes, _MINUTES[language]
    return f"{count} {names[0] if count == 1 else names[1]}"


def placeholder_values(language: str) -> dict[str, str]:
    """Every placeholder a page may use, with its text in ``language``."""
    rules = clinical_rules()
    fever, alerts = rules.fever, rules.alerts
    return {
        "urgent_advice": urgent_advice(language),
        "emergency_fallback": emergency_fallback(language),
        # Temperatures as the site's readers write them (regions.toml's default region:
        # "38,0 C" in Belgium), as in the advice sentence.
        "fever": temperature_text(fever.threshold_c, language),
        "recheck_from": temperature_text(fever.recheck_from_c, language),
        "recheck_after": format_duration(fever.recheck_after_minutes, language),
        "checkin_resend_after": format_duration(alerts.checkin_resend_after_minutes, language),
        "checkin_flag_after": format_duration(alerts.checkin_flag_after_minutes, language),
        "cd4_recovered": format_number(rules.cd4.recovered_at_least, language),
        # The symptom check-in's last line ("Reply numbers, or 0 if none."), as the SMS says it.
        "checkin_reply_line": get_template("checkin_symptoms", language).text.splitlines()[-1],
        **{RED_FLAG_PREFIX + flag.id: site_wording(flag, language) for flag in red_flags()},
    }
