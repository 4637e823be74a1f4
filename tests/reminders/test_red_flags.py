"""The red-flag file: validated on load, each flag in every language with its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from reminders.core import red_flags as module
from reminders.core.clinical_rules import LANGUAGES
from reminders.core.red_flags import RedFlagError, applicable_flags, load_red_flags

FILE = Path(module.__file__).with_name("red_flags.toml")
INOTUZUMAB = "inotuzumab ozogamicin"


def test_every_flag_has_wording_phrases_and_a_source_in_every_language() -> None:
    for flag in load_red_flags().flags:
        assert flag.source.strip() and flag.summary.strip(), flag.id
        for lang in LANGUAGES:
            assert flag.site[lang].strip() and flag.phrases[lang], (flag.id, lang)


def test_the_issue_minimum_list_is_there() -> None:
    assert load_red_flags().ids >= {
        "fever", "rigors", "breathing", "chest_pain", "fainting", "confusion", "seizure",
        "neuro", "bleeding", "swelling", "jaundice", "liver_vod",
    }  # fmt: skip


def test_a_menu_symptom_reports_its_flag_and_drug_flags_apply_to_their_drug() -> None:
    for_drug, other = applicable_flags({"breathing", "liver_vod"}, "rituximab")
    assert [f.id for f in for_drug] == ["breathing"] and [f.id for f in other] == ["liver_vod"]
    for_drug, other = applicable_flags({"liver_vod"}, INOTUZUMAB)
    assert [f.id for f in for_drug] == ["liver_vod"] and other == ()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('id = "chest_pain"', 'id = "Chest pain"', "flag 'Chest pain', id: String should match"),
        (
            'site.nl = "een nieuwe hoest',
            'site.xx = "een nieuwe hoest',
            "flag 'breathing': Value error, site has no nl entry",
        ),
        ('id = "seizure"', 'id = "chest_pain"', "flag 'chest_pain' is defined twice"),
        ('id = "rigors"\n', 'id = "rigors"\nfever_in_words = true\n', "only one flag may be"),
    ],
)
def test_a_broken_file_names_the_file_the_flag_and_the_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = FILE.read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "red_flags.toml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(RedFlagError) as info:
        load_red_flags(broken)
    assert str(info.value).startswith("red_flags.toml: ") and message in str(info.value)


def test_a_broken_red_flag_file_stops_the_parser_instead_of_reading_every_reply_as_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reminders.core import parser

    broken = tmp_path / "red_flags.toml"
    text = FILE.read_text(encoding="utf-8")
    broken.write_text(text.replace('id = "seizure"', 'id = "chest_pain"', 1), encoding="utf-8")
    monkeypatch.setattr(parser, "load_red_flags", lambda: load_red_flags(broken))
    parser._red_flag_patterns.cache_clear()
    try:
        with pytest.raises(RedFlagError):
            parser.parse_reply("j'ai de la fièvre")
    finally:
        monkeypatch.undo()
        parser._red_flag_patterns.cache_clear()
    assert "fever" in parser.parse_reply("j'ai de la fièvre").red_flags
