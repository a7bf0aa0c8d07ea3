"""Anchors: a question naming one version, year or numbered item among siblings is answered from that
one, and abstains when the corpus has none about it (rag/anchors.py, used by retrieval and answering)."""

from __future__ import annotations

import pytest

from rag import Assistant
from rag.anchors import anchors, cover
from rag.indexer import build_index


@pytest.mark.parametrize("question, named", [
    ("When was Python 3.12.0 final released?", [("version", "3.12.0")]),
    ("Who won seats on the 2026 term steering council?", [("year", "2026")]),
    ("What changed on 2023-10-02?", [("date", "2023-10-02")]),
    ("What does Article 12 require of data processors?", [("number", "12")]),
    ("Which PEP replaced PEP 291 in May 2019?", [("number", "291"), ("year", "2019")]),
    ("How many people sit on the council?", []),
    ("What is the budget, in dollars, of 12,000 projects?", []),
    ("Do MEK 1/2 inhibitors treat type 1 diabetes in BRCA 1 carriers?", []),  # nomenclature, not anchors
    ("What does section 4 of RFC 9110 define?", [("number", "4"), ("number", "9110")]),
    ("Glucose restriction to 0.05% reduces life span by 2.5 percent", []),  # decimals are not versions
])
def test_anchors_are_the_identifiers_a_question_names(question, named):
    assert [(a.kind, a.value) for a in anchors(question)] == named


@pytest.mark.parametrize("question, strong, weak, expected", [
    ("When was 3.12.0 released?", "PEP 693 – Python 3.12 Release Schedule\n- 3.12.0 final: Monday", "", 1.0),
    ("When was 3.12.0 released?", "Python 3.12 Release Schedule\nThe final shipped on Monday.", "", 1.0),
    ("When does 3.13 get fixes?", "Python 3.13.2 and later", "", 1.0),
    ("When does 3.13 get fixes?", "Python 3.11 until 3.11.0", "", 0.0),
    ("When does 3.1 get fixes?", "Python 3.11 until 3.11.0", "", 0.0),  # 3.1 is not 3.11
    ("When does 3.13 get fixes?", "fixes come monthly", "Python 3.13 schedule", 0.5),
    ("Who won in 2023?", "Election results 2023-12-01", "", 1.0),
    ("Who won in 2023 under Article 5?", "Article 5 (2021 text)", "", 0.5),
    ("Who won?", "anything", "", 1.0),
    ("Are BRCA 1 mutation carriers at risk?", "BRCA1 carriers were followed for ten years", "", 1.0),
])
def test_cover_counts_the_anchors_a_unit_its_headings_or_title_name(question, strong, weak, expected):
    assert cover(anchors(question), strong, weak) == pytest.approx(expected)


# five release notes that differ only in their version, dates and people: the version is in the title
# and the heading, never in the sentence that answers
RELEASES = {"4.1": ("March 3, 2021", "Ada Brennan"), "4.2": ("June 9, 2021", "Tomas Ruiz"),
            "4.3": ("October 12, 2021", "Mei Ling Zhou"), "4.4": ("February 1, 2022", "Oskar Lind"),
            "4.5": ("May 17, 2022", "Priya Nair")}


def release_notes(version: str, date: str, manager: str) -> str:
    return (f"# Larkspur {version} Release Notes\n\n"
            "Larkspur is an open-source scheduling library for clinics and small hospitals.\n\n"
            f"## Larkspur {version} schedule\n\n"
            f"The final release shipped on {date}, after two betas and a release candidate.\n"
            f"The release manager for this series is {manager}.\n"
            "Bugfix releases follow every two months for eighteen months, then security fixes only.\n\n"
            "## Upgrading\n\n"
            "Upgrading from the previous series needs no database migration, and the configuration file "
            "keeps its format. Plugins built against the previous series keep working.\n")


def release_files() -> dict[str, str]:
    return {f"larkspur-{v.replace('.', '-')}.md": release_notes(v, d, m) for v, (d, m) in RELEASES.items()}


def assistant_over(tmp_path_factory, settings, files: dict[str, str]) -> Assistant:
    """An assistant over a fresh index of these files (name -> text)."""
    root = tmp_path_factory.mktemp("anchors")
    docs = root / "docs"
    docs.mkdir()
    for name, text in files.items():
        (docs / name).write_text(text, encoding="utf-8")
    build_index([docs], root / "index", settings)
    return Assistant.load(root / "index", settings)


@pytest.fixture(scope="module")
def releases(tmp_path_factory, settings, embedder) -> Assistant:
    return assistant_over(tmp_path_factory, settings, release_files())


@pytest.mark.parametrize("version", ["4.2", "4.4", "4.5"])
def test_a_question_naming_one_version_is_answered_from_that_versions_notes(releases, version):
    date, manager = RELEASES[version]
    ans = releases.answer(f"When did the final release of Larkspur {version} ship?")
    assert not ans.abstained, ans.text
    assert ans.citations[0].source == f"larkspur-{version.replace('.', '-')}.md", ans.text
    assert date in ans.text
    ans = releases.answer(f"Who is the release manager of Larkspur {version}?")
    assert not ans.abstained and manager in ans.citations[0].quote, ans.text


@pytest.mark.parametrize("question", ["When did the final release of Larkspur 4.7 ship?",
                                      "Who is the release manager of Larkspur 3.9?"])
def test_a_question_naming_a_version_the_corpus_lacks_abstains(releases, question):
    ans = releases.answer(question)
    assert ans.abstained, ans.text
    assert ans.passages  # the closest passages are still listed


def test_without_a_named_version_the_answer_is_not_held_back(releases):
    ans = releases.answer("Does upgrading Larkspur need a database migration?")
    assert not ans.abstained and "no database migration" in ans.text, ans.text


def election(year: int, opened: str) -> str:
    return (f"# {year} Board Election\n\n"
            f"This document describes the schedule of the board election for the {year} term.\n\n"
            f"## Schedule\n\nThe nomination period was: {opened} through two weeks later.\n"
            f"Unlike the {year - 1} term board election, when nominations opened late, they opened on time.\n"
            f"The voting period ends on December 15, {year - 1}, at noon.\n\n"
            "## Results\n\nThe results are published on the community forum.\n")


@pytest.fixture(scope="module")
def elections(tmp_path_factory, settings, embedder) -> Assistant:
    # each term's election runs in the year before it, and each document compares itself with the previous
    # term's: the 2021 one mentions the 2020 term's nominations in its text. The release notes are other
    # documents, as any real folder has
    files = {f"election-{year}.md": election(year, opened)
             for year, opened in ((2020, "November 1, 2019"), (2021, "November 2, 2020"), (2022, "November 3, 2021"))}
    return assistant_over(tmp_path_factory, settings, files | release_files())


@pytest.mark.parametrize("year", [2020, 2021, 2022])
def test_a_year_a_documents_title_names_ranks_that_document_above_siblings_that_mention_it(elections, year):
    hits = elections.retriever.search(f"When did nominations open for the {year} term board election?")
    assert hits[0].chunk.source == f"election-{year}.md", [h.chunk.source for h in hits]
