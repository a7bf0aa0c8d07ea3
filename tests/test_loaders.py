"""Every loader on real files written by the tests, and every kind of bad file in a folder.

The PDF is a hand-assembled, valid PDF 1.4 (objects, text content streams, exact xref offsets),
checked by pypdf in strict mode; the DOCX is written with python-docx.
"""

from __future__ import annotations

import io
import logging

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from rag.loaders import SUPPORTED, LoaderError, load_file, load_paths


def make_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    """A minimal valid PDF: one page per entry, each line drawn as Helvetica text."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, lines in enumerate(pages):
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops += [f"({esc(line)}) Tj", "T*"]
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font "
                       f"<< /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    info = None
    if title:
        objects.append(f"<< /Title ({esc(title)}) /Producer (rag tests) >>".encode())
        info = len(objects)
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R" + (f" /Info {info} 0 R" if info else "") + " >>"
    out += b"trailer\n" + trailer.encode() + b"\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


PDF_PAGES = [
    ["Geothermal heat pumps move heat between a building and the ground.",
     "The ground stays near 12 degrees all year."],
    ["Boreholes for a house are usually 80 to 150 metres deep."],
]


def make_docx(path) -> None:
    document = docx.Document()
    document.core_properties.title = "Kiln Firing Guide"
    document.core_properties.author = "Bea Potter"
    document.add_heading("Firing stoneware", level=1)
    document.add_paragraph("Stoneware is fired to about 1200 degrees Celsius in a reduction kiln.")
    document.add_paragraph("   ")  # blank paragraphs are dropped
    document.add_paragraph("Cool the kiln slowly to avoid dunting.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "cone", "temperature"
    table.cell(1, 0).text, table.cell(1, 1).text = "6", "1222"
    document.save(str(path))


HTML_PAGE = """<!DOCTYPE html>
<html><head><title>Tidal Power Notes</title><meta name="author" content="Ada Lovelace"></head>
<body>
<header><div class="logo">Example Corp</div></header>
<nav><ul>
  <li><a href="/">Home</a></li><li><a href="/about">About us</a></li>
  <li><a href="/shop">Shop our seasonal catalogue</a></li><li><a href="/contact">Contact the sales team</a></li>
</ul></nav>
<main><article>
<h1>How tidal barrages generate electricity</h1>
<p>A tidal barrage is a dam built across the mouth of an estuary. As the tide rises, water flows
through sluice gates into the basin behind the barrage, and the gates are closed at high tide.</p>
<p>When the sea level outside has fallen far enough, the trapped water is released through low-head
turbines, which turn generators and feed the grid. The La Rance station in Brittany has worked this
way since 1966.</p>
<p>Because tides are predictable years in advance, the output of a barrage can be scheduled
precisely, unlike wind or solar generation, although it arrives in two pulses each day.</p>
</article></main>
<footer><p>Copyright 2024 Example Corp. All rights reserved.</p>
<p><a href="/privacy">Privacy policy</a> | <a href="/cookies">Cookie settings</a></p></footer>
</body></html>
"""


# ---- good files, one loader each ----------------------------------------------------------------

def test_txt_loads_text_with_first_line_as_title_and_normalised_newlines(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("\ufeffBee keeping basics\r\n\r\nA hive holds one queen.\rDrones do not sting.\n".encode())
    doc = load_file(path)
    assert doc.title == "Bee keeping basics"
    assert doc.text == "Bee keeping basics\n\nA hive holds one queen.\nDrones do not sting.\n"
    assert doc.source == "notes.txt"
    assert doc.metadata == {"file_name": "notes.txt"}


def test_txt_with_overlong_first_line_falls_back_to_file_stem_as_title(tmp_path):
    path = tmp_path / "long-line.txt"
    path.write_text("word " * 60 + "\nsecond line", encoding="utf-8")
    assert load_file(path).title == "long-line"


def test_txt_in_utf16_with_bom_is_decoded(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_bytes("Café menu\nCroissant and coffee.".encode("utf-16"))
    doc = load_file(path)
    assert doc.text == "Café menu\nCroissant and coffee."


def test_markdown_front_matter_becomes_metadata_and_title_and_is_removed_from_text(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text(
        "---\ntitle: Sourdough Starter Guide\nauthor: Jo Baker\ndate: 2024-03-01\nservings: 4\n"
        "tags: [bread, baking]\n---\n\n# Feeding\n\nFeed the starter twice a day with equal flour and water.\n",
        encoding="utf-8")
    doc = load_file(path)
    assert doc.title == "Sourdough Starter Guide"
    assert doc.metadata == {"file_name": "guide.md", "author": "Jo Baker", "date": "2024-03-01",
                            "servings": 4, "tags": "['bread', 'baking']"}
    assert "---" not in doc.text and "author" not in doc.text
    assert doc.text.strip().startswith("# Feeding")
    assert "Feed the starter twice a day" in doc.text


def test_markdown_without_front_matter_takes_first_heading_as_title(tmp_path):
    path = tmp_path / "plain.md"
    path.write_text("\n## Pruning roses\n\nCut above an outward-facing bud.\n", encoding="utf-8")
    doc = load_file(path)
    assert doc.title == "Pruning roses"
    assert doc.metadata == {"file_name": "plain.md"}


def test_markdown_with_invalid_yaml_front_matter_is_a_loader_error(tmp_path):
    path = tmp_path / "broken.md"
    path.write_text("---\ntitle: [unclosed\n---\nBody text.\n", encoding="utf-8")
    with pytest.raises(LoaderError, match="invalid YAML front matter"):
        load_file(path)


def test_markdown_front_matter_that_is_not_a_mapping_is_a_loader_error(tmp_path):
    path = tmp_path / "list.md"
    path.write_text("---\n- a\n- b\n---\nBody text.\n", encoding="utf-8")
    with pytest.raises(LoaderError, match="not a YAML mapping"):
        load_file(path)


def test_html_keeps_the_main_article_and_drops_nav_and_footer_boilerplate(tmp_path):
    path = tmp_path / "tides.html"
    path.write_text(HTML_PAGE, encoding="utf-8")
    doc = load_file(path)
    assert "A tidal barrage is a dam built across the mouth of an estuary." in doc.text
    assert "The La Rance station in Brittany has worked this way since 1966." in doc.text
    assert "it arrives in two pulses each day" in doc.text
    for boilerplate in ("Shop our seasonal catalogue", "Contact the sales team", "About us",
                        "All rights reserved", "Privacy policy", "Cookie settings"):
        assert boilerplate not in doc.text
    assert doc.title in ("How tidal barrages generate electricity", "Tidal Power Notes")
    assert doc.metadata["author"] == "Ada Lovelace"


def test_html_page_without_any_text_is_a_loader_error(tmp_path):
    path = tmp_path / "empty.htm"
    path.write_text("<html><head><script>var x = 1;</script></head><body><div><img src='a.png'></div>"
                    "</body></html>", encoding="utf-8")
    with pytest.raises(LoaderError, match="no main text"):
        load_file(path)


def test_hand_written_pdf_is_valid_in_strict_mode(caplog):
    data = make_pdf(PDF_PAGES, title="Heat Pump Primer")
    with caplog.at_level(logging.WARNING, logger="pypdf"):
        reader = PdfReader(io.BytesIO(data), strict=True)
        assert len(reader.pages) == 2
        assert "Boreholes" in reader.pages[1].extract_text()
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_pdf_text_of_every_page_title_and_page_starts_are_loaded(tmp_path):
    path = tmp_path / "heat-pumps.pdf"
    path.write_bytes(make_pdf(PDF_PAGES, title="Heat Pump Primer"))
    doc = load_file(path)
    assert doc.title == "Heat Pump Primer"
    assert doc.metadata["pages"] == 2
    for line in PDF_PAGES[0] + PDF_PAGES[1]:
        assert line in doc.text
    starts = doc.metadata["page_starts"]
    assert starts[0] == 0
    assert doc.text[starts[1]:].startswith(PDF_PAGES[1][0])
    assert PDF_PAGES[1][0] not in doc.text[:starts[1]]


def test_pdf_without_title_uses_file_stem(tmp_path):
    path = tmp_path / "untitled-scan.pdf"
    path.write_bytes(make_pdf([["Only one line here."]]))
    assert load_file(path).title == "untitled-scan"


def test_pdf_with_no_text_layer_is_a_loader_error_asking_for_ocr(tmp_path):
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    buf = io.BytesIO()
    writer.write(buf)
    path = tmp_path / "scan.pdf"
    path.write_bytes(buf.getvalue())
    with pytest.raises(LoaderError, match="no extractable text"):
        load_file(path)


def test_encrypted_pdf_is_a_loader_error(tmp_path):
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(PDF_PAGES))))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    path = tmp_path / "locked.pdf"
    path.write_bytes(buf.getvalue())
    with pytest.raises(LoaderError, match="encrypted PDF"):
        load_file(path)


def test_docx_paragraphs_table_title_and_author_are_loaded(tmp_path):
    path = tmp_path / "kiln.docx"
    make_docx(path)
    doc = load_file(path)
    assert doc.title == "Kiln Firing Guide"
    assert doc.metadata == {"file_name": "kiln.docx", "author": "Bea Potter"}
    assert doc.text == ("Firing stoneware\n\nStoneware is fired to about 1200 degrees Celsius in a reduction "
                        "kiln.\n\nCool the kiln slowly to avoid dunting.\n\ncone | temperature\n\n6 | 1222")


# ---- bad files ----------------------------------------------------------------------------------

GOOD_PDF = make_pdf(PDF_PAGES, title="Heat Pump Primer")
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "empty.txt": (b"", "empty file"),
    "blank.md": (b" \n\t\n  ", "empty file"),
    "binary.txt": (bytes(range(256)) * 8, "binary content"),
    "latin1.txt": ("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("latin-1"), "not valid UTF-8"),
    "garbage.pdf": (b"%PDF-1.4\n" + bytes(range(256)) * 4, "corrupt or unreadable PDF"),
    "truncated.pdf": (GOOD_PDF[: len(GOOD_PDF) // 2], "corrupt or unreadable PDF"),
    # a page tree object with its dictionary cut away: pypdf raises AttributeError on this one
    "broken-page-tree.pdf": (GOOD_PDF.replace(b"2 0 obj\n<< /Type /Pages /Kids [", b"2 0 obj"),
                             "corrupt or unreadable PDF"),
    "random.docx": (b"PK\x03\x04 this is not really a zip archive" * 10, "corrupt or unreadable DOCX"),
    "text.docx": (b"Plain text pretending to be a Word document.", "corrupt or unreadable DOCX"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_raises_loader_error_with_one_line_reason(tmp_path, name):
    data, reason = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(LoaderError) as info:
        load_file(path)
    message = str(info.value)
    assert reason in message
    assert "\n" not in message and len(message) < 200


def test_truncated_docx_is_a_loader_error(tmp_path):
    good = tmp_path / "good.docx"
    make_docx(good)
    bad = tmp_path / "cut.docx"
    bad.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(LoaderError, match="corrupt or unreadable DOCX"):
        load_file(bad)


def test_unsupported_extension_passed_to_load_file_is_a_loader_error(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(LoaderError, match="unsupported file type '.csv'"):
        load_file(path)


def _write_mixed_folder(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("Apples\n\nApples grow on trees.", encoding="utf-8")
    (root / "sub" / "b.md").write_text("---\ntitle: Bees\n---\nBees make honey.", encoding="utf-8")
    (root / "sub" / "deeper" / "c.html").write_text(HTML_PAGE, encoding="utf-8")
    (root / "sub" / "deeper" / "d.pdf").write_bytes(GOOD_PDF)
    make_docx(root / "sub" / "e.docx")
    for name, (data, _) in BAD_FILES.items():
        (root / "bad" / name).parent.mkdir(exist_ok=True)
        (root / "bad" / name).write_bytes(data)
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    (root / "sub" / "data.csv").write_text("a,b\n", encoding="utf-8")
    (root / "Makefile").write_text("all:\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("Hidden file text.", encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "notes.txt").write_text("Text inside a hidden folder.", encoding="utf-8")
    (root / "sub" / ".cache").mkdir()
    (root / "sub" / ".cache" / "x.md").write_text("Also hidden.", encoding="utf-8")


def test_load_paths_walks_folders_recursively_and_reports_every_bad_and_unsupported_file(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    _write_mixed_folder(root)
    report = load_paths([root])

    by_source = {d.source: d for d in report.documents}
    assert sorted(by_source) == ["a.txt", "sub/b.md", "sub/deeper/c.html", "sub/deeper/d.pdf", "sub/e.docx"]
    assert by_source["sub/b.md"].title == "Bees"
    assert "Boreholes" in by_source["sub/deeper/d.pdf"].text
    assert "Cool the kiln slowly" in by_source["sub/e.docx"].text

    assert sorted(report.skipped) == sorted(f"bad/{name}" for name in BAD_FILES)
    for name, (_, reason) in BAD_FILES.items():
        assert reason in report.skipped[f"bad/{name}"]
        assert "\n" not in report.skipped[f"bad/{name}"]
    assert sorted(report.unsupported) == ["Makefile", "image.png", "sub/data.csv"]


def test_hidden_files_and_hidden_folders_are_ignored(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    _write_mixed_folder(root)
    report = load_paths([root])
    everything = [d.source for d in report.documents] + list(report.skipped) + report.unsupported
    assert everything  # the folder does hold visible files
    assert not [s for s in everything if any(part.startswith(".") for part in s.split("/"))]
    assert not [d for d in report.documents if "hidden" in d.text.lower()]


def test_load_paths_of_a_hidden_parent_folder_still_loads_its_visible_files(tmp_path):
    root = tmp_path / ".config" / "notes"
    root.mkdir(parents=True)
    (root / "n.txt").write_text("Visible note inside a folder whose parent is hidden.", encoding="utf-8")
    assert [d.source for d in load_paths([root]).documents] == ["n.txt"]


def test_load_paths_with_several_roots_prefixes_sources_with_root_names(tmp_path):
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "same.txt").write_text(f"Document in {name}.", encoding="utf-8")
    single = tmp_path / "single.md"
    single.write_text("A single file root.", encoding="utf-8")
    report = load_paths([tmp_path / "alpha", tmp_path / "beta", single])
    assert sorted(d.source for d in report.documents) == ["alpha/same.txt", "beta/same.txt", "single.md"]


def test_load_paths_of_a_missing_path_is_a_loader_error(tmp_path):
    with pytest.raises(LoaderError, match="no such file or folder"):
        load_paths([tmp_path / "nope"])


def test_supported_extensions_all_have_a_working_loader(tmp_path):
    """Every extension in SUPPORTED loads a real file of its kind (no extension left unhandled)."""
    samples = {
        ".txt": b"Plain text.", ".md": b"# Heading\n\nBody.", ".markdown": b"Body of markdown.",
        ".html": HTML_PAGE.encode(), ".htm": HTML_PAGE.encode(), ".pdf": GOOD_PDF,
    }
    for ext in SUPPORTED:
        path = tmp_path / f"sample{ext}"
        if ext == ".docx":
            make_docx(path)
        else:
            path.write_bytes(samples[ext])
        assert load_file(path).text.strip(), ext
