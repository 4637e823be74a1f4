"""Broken content fails the build with a message that names the file."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from backend.infosite import BuildError, build_site, load_site
from backend.infosite.build import CONTENT_DIR, MARKER, SEEDS_DIR, SITE_DIR


@pytest.fixture
def content(tmp_path: Path) -> Path:
    """A private copy of the real content, to break."""
    copy = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must be there) by ``new`` in a content file."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def failure(content: Path, *, strict: bool = True) -> str:
    """The build error message for ``content``; fails the test if it builds."""
    with pytest.raises(BuildError) as caught:
        load_site(content, seeds_dir=SEEDS_DIR, strict=strict)
    return str(caught.value)


def test_the_copy_builds(content: Path) -> None:
    assert load_site(content, seeds_dir=SEEDS_DIR, strict=True).pages


@pytest.mark.parametrize("field", ["title", "summary", "order", "language", "sources"])
def test_missing_front_matter_field(content: Path, field: str) -> None:
    page = content / "en" / "cmv.md"
    text = page.read_text(encoding="utf-8")
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{field}:"))
    end = start + 1
    while lines[end].startswith("  - "):  # a YAML list continues on indented lines
        end += 1
    page.write_text("\n".join(lines[:start] + lines[end:]), encoding="utf-8")
    message = failure(content)
    assert str(page) in message and f"missing '{field}'" in message


def test_wrong_field_type(content: Path) -> None:
    edit(content / "en" / "cmv.md", "order: 6", "order: six")
    assert "cmv.md: error: front matter 'order' must be a int" in failure(content)


def test_no_front_matter(content: Path) -> None:
    page = content / "en" / "cmv.md"
    page.write_text("## Just text\n\nNo front matter here.\n", encoding="utf-8")
    assert f"{page}: error: has no front matter" in failure(content)


def test_duplicate_output_path(content: Path) -> None:
    copy = content / "en" / "cmv-again.md"
    shutil.copy(content / "en" / "cmv.md", copy)
    edit(copy, "translation_key: cmv", "slug: cmv")
    edit(copy, "order: 6", "order: 60")
    message = failure(content)
    assert "same output path 'cmv.html'" in message
    assert "cmv-again.md" in message and str(content / "en" / "cmv.md") in message


def test_broken_internal_link(content: Path) -> None:
    page = content / "en" / "family.md"
    edit(page, "(fever.md)", "(fevr.md)")
    assert f"{page}: error: broken link 'fevr.md': no such page" in failure(content)


def test_link_to_a_missing_section(content: Path) -> None:
    page = content / "en" / "family.md"
    edit(page, "(fever.md)", "(fever.md#no-such-section)")
    message = failure(content)
    assert str(page) in message and "has no section #no-such-section" in message


def test_unknown_glossary_term(content: Path) -> None:
    page = content / "en" / "cmv.md"
    edit(page, "[[PCR test]]", "[[PRC test]]")
    message = failure(content)
    assert f"{page}: error: unknown glossary term 'PRC test'" in message


def test_unknown_placeholder(content: Path) -> None:
    page = content / "en" / "fever.md"
    edit(page, "{{ fever }}", "{{ fever_kelvin }}")
    assert f"{page}: error: unknown placeholder {{{{ fever_kelvin }}}}" in failure(content)


def test_source_not_in_the_list(content: Path) -> None:
    page = content / "en" / "cmv.md"
    edit(page, "  - 002_56971d7eaf23c097.txt", "  - 999_made_up.txt")
    assert f"{page}: error: source '999_made_up.txt' is not listed" in failure(content)


def test_level_one_heading_in_the_body(content: Path) -> None:
    page = content / "en" / "cmv.md"
    edit(page, "## When it can happen", "# When it can happen")
    assert f"{page}: error: has a level-1 heading" in failure(content)


def test_warnings_fail_only_in_strict_mode(content: Path) -> None:
    page = content / "en" / "cmv.md"
    # The term now appears before its glossary link: a warning.
    edit(page, "[[PCR test]]", "PCR test")
    message = failure(content, strict=True)
    assert f"{page}: warning: uses the term 'PCR test' before linking it" in message
    relaxed = load_site(content, seeds_dir=SEEDS_DIR, strict=False)
    assert any(w.path == page for w in relaxed.warnings)


def test_all_problems_are_reported_at_once(content: Path) -> None:
    edit(content / "en" / "family.md", "(fever.md)", "(fevr.md)")
    edit(content / "en" / "cmv.md", "[[PCR test]]", "[[PRC test]]")
    message = failure(content)
    assert "family.md" in message and "cmv.md" in message


def test_failed_build_writes_nothing_and_keeps_the_last_site(content: Path, tmp_path: Path) -> None:
    out = tmp_path / "public"
    build_site(out, content_dir=content, strict=True)
    before = (out / "family.html").read_bytes()
    edit(content / "en" / "family.md", "(fever.md)", "(fevr.md)")
    with pytest.raises(BuildError):
        build_site(out, content_dir=content, strict=True)
    assert (out / "family.html").read_bytes() == before


def test_build_never_deletes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(BuildError, match="not overwriting"):
        build_site(out)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_rebuild_replaces_the_previous_build(tmp_path: Path) -> None:
    out = tmp_path / "public"
    build_site(out)
    (out / "stale.html").write_text("old", encoding="utf-8")
    build_site(out)
    assert (out / MARKER).exists() and not (out / "stale.html").exists()


# -- every page in every language (content/translations.toml) -----------------


EXTRA_PAGE = """---
title: Parking at the hospital
summary: Where to park.
order: 40
language: en
sources:
  - 003_a1949903592dbecf.txt
---

Ask at the desk.
"""


def test_a_page_missing_in_a_language_fails_unless_listed(content: Path) -> None:
    """Every page is in en, fr and nl; a page in English only fails until it is listed."""
    page = content / "en" / "parking.md"
    page.write_text(EXTRA_PAGE, encoding="utf-8")
    message = failure(content)
    assert (
        f"{page}: error: has no translation in fr, nl (translation_key 'parking'): write it, "
        "or list [parking] with its reason in translations.toml"
    ) in message
    assert message.count("has no translation") == 1
    exceptions = content / "translations.toml"
    with exceptions.open("a", encoding="utf-8") as file:
        file.write('\n[parking]\nreason = "for the car park of one hospital only"\n')
    assert load_site(content, seeds_dir=SEEDS_DIR, strict=True).pages


def test_a_translation_counts_by_its_key(content: Path) -> None:
    """A Dutch page without translation_key is keyed by its file name: not a translation."""
    edit(content / "nl" / "koorts.md", "translation_key: fever\n", "")
    message = failure(content)
    assert f"{content / 'en' / 'fever.md'}: error: has no translation in nl" in message
    assert f"{content / 'nl' / 'koorts.md'}: error: has no translation in en, fr" in message


def _list_exception(content: Path, entry: str) -> Path:
    path = content / "translations.toml"
    with path.open("a", encoding="utf-8") as file:
        file.write(f"\n{entry}\n")
    return path


def test_a_stale_exception_is_a_warning(content: Path) -> None:
    path = _list_exception(content, '[fever]\nreason = "translation pending (issue 15)"')
    message = failure(content, strict=True)
    assert (
        f"{path}: warning: [fever] is listed as untranslated, but the page now exists in "
        "en, fr, nl: remove the entry"
    ) in message
    relaxed = load_site(content, seeds_dir=SEEDS_DIR, strict=False)
    assert [w.path for w in relaxed.warnings] == [path]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('[cmv]\nreason = ""', "error: [cmv] needs a 'reason'"),
        (
            '[famly]\nreason = "typo"',
            "warning: [famly] is listed, but no page has translation_key 'famly'",
        ),
    ],
)
def test_problems_in_the_exceptions_list(content: Path, entry: str, problem: str) -> None:
    path = _list_exception(content, entry)
    assert f"{path}: {problem}" in failure(content)


def test_a_page_may_not_take_the_place_of_a_generated_home(content: Path) -> None:
    """Without a French home page the builder writes one; no other page may be built there."""
    (content / "fr" / "index.md").unlink()
    _list_exception(content, '[home]\nreason = "the French home is generated"')
    page = content / "fr" / "fievre.md"
    edit(page, "slug: fievre", "slug: index")
    assert f"{page}: error: is built as fr/index.html, the home page of 'fr'" in failure(content)


# -- sources: cited by title, body and year (content/sources.toml) ------------


@pytest.mark.parametrize(
    ("old", "new", "problems"),
    [
        (
            'title = "Results of inotuzumab',
            'name = "Results of inotuzumab',
            [
                "error: ['004_74c35664e4c4c820.txt'] needs a 'title'",
                "warning: ['004_74c35664e4c4c820.txt'] has an unknown field 'name'",
            ],
        ),
        (
            "year = 2013",
            'year = "2013"',
            ["error: ['004_74c35664e4c4c820.txt'] 'year' must be a int"],
        ),
        (
            "year = 2011",
            "year = 211",
            ["error: ['003_a1949903592dbecf.txt'] 'year' 211 is not plausible"],
        ),
    ],
)
def test_problems_in_the_sources_list(
    content: Path, old: str, new: str, problems: list[str]
) -> None:
    path = content / "sources.toml"
    edit(path, old, new)
    message = failure(content)
    for problem in problems:
        assert f"{path}: {problem}" in message


def test_a_source_that_is_not_a_seed(content: Path, tmp_path: Path) -> None:
    """Checked against a folder of the seeds' names, so that it runs wherever the clone is."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for name in tomllib.loads((content / "sources.toml").read_text(encoding="utf-8")):
        (seeds / name).write_text("", encoding="utf-8")
    path = content / "sources.toml"
    assert load_site(content, seeds_dir=seeds, strict=True).pages
    edit(path, '["004_74c35664e4c4c820.txt"]', '["005_not_a_seed.txt"]')
    with pytest.raises(BuildError) as caught:
        load_site(content, seeds_dir=seeds, strict=True)
    assert f"{path}: error: cites '005_not_a_seed.txt', which is not in {seeds}" in str(
        caught.value
    )


# -- the page frame (site/strings.toml) --------------------------------------


def test_every_language_has_every_frame_string(tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    shutil.copytree(SITE_DIR, site_dir)
    edit(site_dir / "strings.toml", 'home_note = "startpagina"\n', "")
    with pytest.raises(BuildError, match=r"strings.toml: error: \[nl\] has no 'home_note'"):
        build_site(tmp_path / "public", site_dir=site_dir)
