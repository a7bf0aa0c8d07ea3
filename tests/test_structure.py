"""Answer units that follow a document's structure, in every format the loaders read: hard-wrapped lines
joined, abbreviations not taken for sentence ends, list items kept with the line that introduces them,
headings never standing alone; and multi-part questions answered part by part."""

from __future__ import annotations

import docx
import pytest
from test_loaders import make_pdf

from rag import Assistant, build_index
from rag.answering import NOT_IN_CORPUS, _kind, answer_units, split_question, table_header
from rag.chunking import sentence_spans, soft_wrapped
from rag.loaders import load_file

TITLE = "Harbour Data Regulation"
INTRO = "Article 11 Port operators shall do the following:"
ITEMS = ["(1) keep vessel logs for six months;", "(2) appoint a harbour data officer;",
         "(3) report every oil spill to the coast guard within 24 hours."]
DEFINITION = ("Article 12 The berth allocation system referred to in this Regulation is the software that assigns "
              "quay space to arriving vessels according to their draught, length and cargo class, as listed in "
              "Annex II of the regulation.")
FINE = "Article 13 An operator that fails to report a spill is fined 40,000 euros for each day of delay."
BODY = ("Chapter II Duties of operators", INTRO, *ITEMS, DEFINITION, FINE,
        "Chapter III Final provisions", "Article 14 This Regulation enters into force on 1 May 2025.")


def wrap(line: str, width: int = 70) -> list[str]:
    """Hard-wrap a line the way a pdf or a 72-column text file does."""
    out, cur = [], ""
    for word in line.split():
        if cur and len(cur) + 1 + len(word) > width:
            out.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    return out + [cur]


def write_formats(folder) -> None:
    """The same regulation as md, html, docx and a hard-wrapped pdf (one folder per format)."""
    (folder / "md").mkdir()
    (folder / "md" / "harbour.md").write_text(
        f"---\ntitle: {TITLE}\n---\n# {BODY[0]}\n\n{INTRO}\n" + "\n".join(ITEMS)
        + f"\n\n{DEFINITION}\n\n{FINE}\n\n# {BODY[-2]}\n\n{BODY[-1]}\n", encoding="utf-8")
    (folder / "html").mkdir()
    items = "".join(f"<li>{i}</li>" for i in ITEMS)
    (folder / "html" / "harbour.html").write_text(
        f"<html><head><title>{TITLE}</title></head><body><article><h1>{TITLE}</h1><h2>{BODY[0]}</h2>"
        f"<p>{INTRO}</p><ul>{items}</ul><p>{DEFINITION}</p><p>{FINE}</p><h2>{BODY[-2]}</h2><p>{BODY[-1]}</p>"
        "</article></body></html>", encoding="utf-8")
    (folder / "docx").mkdir()
    d = docx.Document()
    d.core_properties.title = TITLE
    d.add_heading(BODY[0], level=1)
    d.add_paragraph(INTRO)
    for item in ITEMS:
        d.add_paragraph(item.split(" ", 1)[1], style="List Number")
    for line in (DEFINITION, FINE):
        d.add_paragraph(line)
    d.add_heading(BODY[-2], level=1)
    d.add_paragraph(BODY[-1])
    d.save(str(folder / "docx" / "harbour.docx"))
    (folder / "pdf").mkdir()
    lines = [TITLE] + [w for line in BODY for w in wrap(line)]
    (folder / "pdf" / "harbour.pdf").write_bytes(make_pdf([lines[:40], lines[40:]], title=TITLE))


FORMATS = ["md", "html", "docx", "pdf"]


@pytest.fixture(scope="module")
def format_indexes(tmp_path_factory, settings, embedder):
    root = tmp_path_factory.mktemp("formats")
    write_formats(root)
    out = {}
    for fmt in FORMATS:
        build_index([root / fmt], root / f"index-{fmt}", settings)
        out[fmt] = (root / fmt, Assistant.load(root / f"index-{fmt}", settings))
    return out


# ---- splitting ----------------------------------------------------------------------------------------

def test_hard_wrapped_lines_are_joined_into_one_sentence_with_exact_offsets():
    text = "\n".join(wrap(DEFINITION, 60)) + "\n" + "\n".join(wrap(FINE, 60)) + "\n"
    assert "\n" in text.split("Article 13")[0].strip()  # the definition really is wrapped
    flat = soft_wrapped(text)
    assert len(flat) == len(text)
    spans = [text[s:e] for s, e, _ in sentence_spans(text)]
    assert [" ".join(s.split()) for s in spans] == [DEFINITION, FINE]


def test_short_lines_headings_and_items_are_not_joined():
    text = "\n".join([TITLE, BODY[0], INTRO, *ITEMS, "Chapter III Final provisions", BODY[-1]]) + "\n"
    spans = [text[s:e] for s, e, _ in sentence_spans(text)]
    assert spans == [TITLE, BODY[0], INTRO, *ITEMS, "Chapter III Final provisions", BODY[-1]]


def test_abbreviations_and_initials_do_not_end_a_sentence():
    text = "Under Art. 5 the fee, e.g. for cargo, is set by Dr. J. Smith of the U.S. office. It is final."
    spans = [text[s:e] for s, e, _ in sentence_spans(text)]
    assert spans == ["Under Art. 5 the fee, e.g. for cargo, is set by Dr. J. Smith of the U.S. office.",
                     "It is final."]


def test_an_intro_line_is_one_unit_with_its_items_and_a_heading_never_stands_alone():
    text = "\n".join([BODY[0], INTRO, *ITEMS, "11. Beijing shall", "- build computing centres;",
                      "- open data sets.", "Chapter III Final provisions", BODY[-1]])
    units = [text[s:e] for s, e, _ in answer_units(text)]
    assert "\n".join([BODY[0], INTRO, *ITEMS]) in units  # heading, intro and items together
    assert all(item in units for item in ITEMS)  # and each item on its own
    assert "11. Beijing shall\n- build computing centres;\n- open data sets." in units
    assert "Chapter III Final provisions\n" + BODY[-1] in units
    assert not any(_kind(u, 0, len(u)) == "heading" for u in units)


# ---- the same document in four formats ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_list_question_is_answered_with_its_items_in_every_format(format_indexes, fmt):
    folder, assistant = format_indexes[fmt]
    ans = assistant.answer("What must port operators do under Article 11?")
    assert not ans.abstained
    text = " ".join(ans.text.split())
    for needle in ("vessel logs", "harbour data officer", "oil spill"):
        assert needle in text, (fmt, ans.text)
    doc = load_file(next(folder.iterdir()))
    for c in ans.citations:
        assert doc.text[c.start:c.end] == c.quote
        lines = [line for line in c.quote.splitlines() if line.strip()]
        assert any(_kind(line, 0, len(line)) != "heading" for line in lines), (fmt, c.quote)  # never a lone heading


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_wrapped_definition_is_cited_whole_in_every_format(format_indexes, fmt):
    _, assistant = format_indexes[fmt]
    ans = assistant.answer("What is the berth allocation system referred to in this Regulation?")
    assert not ans.abstained
    first = " ".join(ans.citations[0].quote.split())
    assert DEFINITION in first, (fmt, first)


@pytest.mark.parametrize("fmt", FORMATS)
def test_short_answer_is_a_span_of_its_citation_in_every_format(format_indexes, fmt):
    folder, assistant = format_indexes[fmt]
    ans = assistant.answer("How much is the daily fine for an operator that fails to report a spill?")
    assert not ans.abstained and ans.short_answer is not None, (fmt, ans.text)
    short = ans.short_answer
    assert "40,000" in short.text and len(short.text) < 40, (fmt, short)
    doc = load_file(next(folder.iterdir()))
    c = ans.citations[short.n - 1]
    assert doc.text[short.start:short.end] == short.text
    assert c.start <= short.start < short.end <= c.end and short.source == c.source


# ---- multi-part questions ------------------------------------------------------------------------------

def test_split_question_splits_coordinated_asks_only():
    assert split_question("Who chaired the meeting and what are the five points?") == [
        "Who chaired the meeting?", "What are the five points?"]
    assert split_question("When was 3.12 released? Who managed it?") == ["When was 3.12 released?", "Who managed it?"]
    assert split_question("What are the strengths and weaknesses of the plan?") == [
        "What are the strengths and weaknesses of the plan?"]
    one = "Which firms and which cities were visited?"
    assert split_question(one) == [one]


def test_each_part_of_a_question_is_cited_or_abstains_on_its_own(format_indexes):
    _, assistant = format_indexes["md"]
    ans = assistant.answer("When does this Regulation enter into force and what must port operators do "
                           "under Article 11?")
    assert not ans.abstained and len(ans.parts) == 2
    assert all(not p.abstained for p in ans.parts)
    assert "1 May 2025" in ans.text and "harbour data officer" in " ".join(ans.text.split())
    assert [c.n for c in ans.citations] == list(range(1, len(ans.citations) + 1))
    assert ans.to_dict()["parts"][0]["question"] == "When does this Regulation enter into force?"

    # a part asking for a kind of answer (a percentage) that no unit holds abstains on its own
    mixed = assistant.answer("When does this Regulation enter into force and what percentage of vessels are "
                             "inspected each year?")
    assert not mixed.abstained and len(mixed.parts) == 2
    assert not mixed.parts[0].abstained and mixed.parts[1].abstained
    assert "1 May 2025" in mixed.text and NOT_IN_CORPUS in mixed.text


VOTES = ("The full vote counts are as follows:\n\n| Candidate | Votes Received |\n|---|---|\n"
         "| Barry Warsaw | 58 |\n| Emily Morehouse | 52 |\n\nNo conflict of interest was observed.")


@pytest.mark.parametrize("row, header", [("| Barry Warsaw", "| Candidate | Votes Received |"),
                                         ("| Emily Morehouse", "| Candidate | Votes Received |"),
                                         ("| Candidate", ""), ("No conflict", ""), ("The full vote", "")])
def test_a_table_row_is_read_with_its_header_row(row, header):
    assert table_header(VOTES, VOTES.index(row)) == header


def test_how_many_votes_cites_the_table_row_the_header_explains(tmp_path, settings, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "election.md").write_text("# Board election 2025\n\nNominees (in alphabetical order):\n\n"
                                      "- [Barry Warsaw](https://discuss.example/t/71732/)\n"
                                      "- [Emily Morehouse](https://discuss.example/t/71733/)\n\n" + VOTES + "\n",
                                      encoding="utf-8")
    build_index([docs], tmp_path / "index", settings)
    ans = Assistant.load(tmp_path / "index", settings).answer("How many votes did Emily Morehouse receive?")
    assert not ans.abstained
    assert ans.citations[0].quote == "| Emily Morehouse | 52 |", ans.text


POWERS = ("#### Powers\n\nThe council has broad authority to make decisions about the project. For example, they "
          "can:\n\n- Accept or reject PEPs\n- Enforce or update the code of conduct\n\n## Release crew\n\n"
          "- Release manager: Ned Deily\n- Windows installers: Steve Dower\n- Documentation: Julien Palard\n\n"
          "## Key points\n\n- The council has broad authority over the project and its many processes.\n"
          "- The crew builds installers for every platform the project supports at present.\n")


def test_a_list_intro_is_joined_with_the_sentences_before_it_on_its_line_and_its_items():
    units = [(POWERS[s:e], POWERS[b:e]) for s, e, b in answer_units(POWERS)]
    assert ("#### Powers\n\nThe council has broad authority to make decisions about the project. For example, they "
            "can:\n\n- Accept or reject PEPs\n- Enforce or update the code of conduct",
            "The council has broad authority to make decisions about the project. For example, they "
            "can:\n\n- Accept or reject PEPs\n- Enforce or update the code of conduct") in units


def test_a_list_of_short_items_right_under_a_heading_is_one_unit_but_a_list_of_sentences_is_not():
    units = [POWERS[s:e] for s, e, _ in answer_units(POWERS)]
    assert ("## Release crew\n\n- Release manager: Ned Deily\n- Windows installers: Steve Dower\n"
            "- Documentation: Julien Palard") in units
    assert "## Release crew\n\n- Release manager: Ned Deily" in units  # the first item also on its own
    assert not any(u.startswith("## Key points") and u.count("\n- ") > 1 for u in units)
