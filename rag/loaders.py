"""Turn files into Documents: txt, md (YAML front matter), html, pdf, docx.

A file that cannot be read raises LoaderError with a one-line reason; `load_folder` collects those
reasons in a report instead of stopping, so one bad file never blocks the rest of a corpus.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import EXTENSIONS

SUPPORTED = EXTENSIONS


class LoaderError(Exception):
    """A file could not be turned into a Document; the message is one line saying why."""


@dataclass
class Document:
    """The text of one file, with where it came from."""

    text: str
    source: str  # path relative to the indexed folder, with forward slashes
    title: str
    metadata: dict = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        payload = self.text + "\x00" + repr(sorted(self.metadata.items())) + "\x00" + self.title
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class LoadReport:
    """What happened to each file of a folder."""

    documents: list[Document] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # source -> reason
    unsupported: list[str] = field(default_factory=list)


def _decode(data: bytes) -> str:
    if not data.strip():
        raise LoaderError("empty file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise LoaderError("binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LoaderError(f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
                          "re-save it as UTF-8") from None


# a run of spaces/tabs longer than this becomes one space, and more than this many line breaks in a row
# become one blank line: aligned text tables and page padding stay readable, while a file of padding (a
# 10 KB docx holding 9 MB of spaces) cannot become a 9M-character document
MAX_SPACE_RUN = 32
MAX_NEWLINE_RUN = 8
_SPACE_RUN = re.compile(r"[ \t\f\v\u00a0]{" + str(MAX_SPACE_RUN + 1) + ",}")
_NEWLINE_RUN = re.compile(r"(?:[ \t]*\n){" + str(MAX_NEWLINE_RUN + 1) + ",}")


# invisible format characters: zero-width space/joiners, direction marks and overrides, word joiner,
# invisible operators, BOM, soft hyphen. They can hide words from search ("ig\u200bnore") or reorder what a
# reader sees (trojan-source bidi overrides), and carry no meaning in extracted text, so they are removed
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _squeeze(text: str) -> str:
    """Line endings made \\n, invisible format characters removed, runs of padding cut down
    (MAX_SPACE_RUN, MAX_NEWLINE_RUN)."""
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _NEWLINE_RUN.sub("\n\n", _SPACE_RUN.sub(" ", text))


def _require_text(text: str, squeeze: bool = True) -> str:
    if squeeze:
        text = _squeeze(text)
    if not text.strip():
        raise LoaderError("no text found in the file")
    return text


def _first_line_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 100 else fallback
    return fallback


def _load_txt(data: bytes, stem: str, limits: Limits) -> tuple[str, str, dict]:
    text = _require_text(_decode(data))
    return text, _first_line_title(text, stem), {}


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*\n", re.S)


def _load_md(data: bytes, stem: str, limits: Limits) -> tuple[str, str, dict]:
    text = _decode(data).replace("\r\n", "\n")
    meta: dict = {}
    m = _FRONT_MATTER.match(text)
    if m:
        try:
            loaded = yaml.safe_load(m.group(1))
        except yaml.YAMLError as e:
            raise LoaderError(f"invalid YAML front matter: {str(e).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise LoaderError("front matter is not a YAML mapping")
        meta = {str(k): v if isinstance(v, (str, int, float, bool)) else str(v)
                for k, v in (loaded or {}).items()}
        text = text[m.end():]
    text = _require_text(text)
    title = str(meta.pop("title", "") or _first_line_title(text, stem))
    return text, title, meta


def _load_html(data: bytes, stem: str, limits: Limits) -> tuple[str, str, dict]:
    import trafilatura

    html = _decode(data)
    text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True)
    if not text or not text.strip():
        raise LoaderError("no main text found in the HTML page")
    meta_obj = trafilatura.extract_metadata(html)
    meta = {}
    title = stem
    if meta_obj is not None:
        title = meta_obj.title or stem
        for key in ("author", "date", "sitename", "url"):
            value = getattr(meta_obj, key, None)
            if value:
                meta[key] = str(value)
    # trafilatura puts each block (paragraph, heading, list item, table row) on one line and never wraps
    # lines: a blank line between blocks makes each its own paragraph, so that a line without a full stop
    # is not read as running into the next (a .docx's blocks are joined the same way)
    text = re.sub(r"\n+", "\n\n", text.strip())
    return _require_text(text), title, meta


MAX_PAGES = 2000  # Settings.max_pages' default


def _load_pdf(data: bytes, stem: str, limits: Limits) -> tuple[str, str, dict]:
    from pypdf import PdfReader

    pypdf_log = logging.getLogger("pypdf")
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)  # its repair notes ("incorrect startxref pointer") are not the user's business
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LoaderError("encrypted PDF; decrypt it first")
        if len(reader.pages) > limits.max_pages:
            raise LoaderError(f"PDF has {len(reader.pages)} pages, over the {limits.max_pages} page limit "
                              "(max_pages)")
        pages = [_squeeze(page.extract_text() or "").strip() for page in reader.pages]
        info = reader.metadata
    except LoaderError:
        raise
    except Exception as e:  # pypdf raises many error types on damaged files (AttributeError, LimitReachedError...)
        raise LoaderError(f"corrupt or unreadable PDF ({type(e).__name__}: {str(e)[:80]})") from None
    finally:
        pypdf_log.setLevel(level)
    text = ""
    page_starts = []
    for page_text in pages:
        if text:
            text += "\n\n"
        page_starts.append(len(text))
        text += page_text
    if not text.strip():
        raise LoaderError("PDF has no extractable text (scanned images need OCR first)")
    title = (info.title if info and info.title else "") or stem
    # squeezed page by page above, so that page_starts stay offsets into the text
    return _require_text(text, squeeze=False), title, {"pages": len(pages), "page_starts": page_starts}


MAX_UNZIPPED_BYTES = 200 * 2**20  # Settings.max_unzipped_mb's default


def _check_unzipped_size(data: bytes, limit: int) -> None:
    """Refuse a zip (docx) whose members would decompress to more than `limit` bytes, before reading them."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise LoaderError("corrupt or unreadable DOCX (not a zip file)") from None
    if total > limit:
        raise LoaderError(f"DOCX would decompress to {total / 2**20:.0f} MB, over the {limit / 2**20:.0f} MB limit "
                          "(max_unzipped_mb)")


def _load_docx(data: bytes, stem: str, limits: Limits) -> tuple[str, str, dict]:
    import docx

    _check_unzipped_size(data, limits.max_unzipped_bytes)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as e:  # python-docx raises a variety of zip/xml errors
        raise LoaderError(f"corrupt or unreadable DOCX ({type(e).__name__})") from None
    blocks, number = [], 0
    for p in document.paragraphs:
        if not p.text.strip():
            continue
        style = (p.style.name if p.style is not None else "") or ""
        numbered = p._p.pPr is not None and p._p.pPr.numPr is not None
        # Word draws list numbers and bullets itself, so they are not in the text: put them back, so
        # that the answerer sees items as items
        if style.startswith("List Number"):
            number += 1
            blocks.append(f"{number}. {p.text}")
            continue
        number = 0
        blocks.append(f"- {p.text}" if style.startswith(("List Bullet", "List Paragraph")) or numbered else p.text)
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells]
            if any(cells):
                blocks.append(" | ".join(cells))
    title = document.core_properties.title or stem
    meta = {"author": document.core_properties.author} if document.core_properties.author else {}
    return _require_text("\n\n".join(blocks)), title, meta


_LOADERS = {
    ".txt": _load_txt, ".md": _load_md, ".markdown": _load_md, ".html": _load_html, ".htm": _load_html,
    ".pdf": _load_pdf, ".docx": _load_docx,
}


@dataclass(frozen=True)
class Limits:
    """Resource bounds for loading one file (Settings.max_file_mb, max_unzipped_mb, max_pages, follow_symlinks)."""

    max_file_bytes: int = 50 * 2**20
    max_unzipped_bytes: int = MAX_UNZIPPED_BYTES
    follow_symlinks: bool = False
    max_pages: int = MAX_PAGES

    @classmethod
    def of(cls, settings) -> Limits:
        return cls(int(settings.max_file_mb * 2**20), int(settings.max_unzipped_mb * 2**20), settings.follow_symlinks,
                   settings.max_pages)


DEFAULT_LIMITS = Limits()


def load_file(path: str | Path, source: str | None = None, limits: Limits = DEFAULT_LIMITS) -> Document:
    """Load one supported file; raises LoaderError with a one-line reason when it cannot."""
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoaderError(f"unsupported file type '{path.suffix or path.name}'")
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise LoaderError(f"file is {size / 2**20:.1f} MB, over the {limits.max_file_bytes / 2**20:.0f} MB "
                              "limit (max_file_mb)")
        data = path.read_bytes()
    except OSError as e:
        raise LoaderError(f"cannot read file: {e.strerror}") from None
    if not data.strip():
        raise LoaderError("empty file")
    text, title, meta = loader(data, path.stem, limits)
    meta = {"file_name": path.name, **meta}
    return Document(text=text, source=source or path.name, title=title.strip() or path.stem, metadata=meta)


def iter_files(root: Path) -> Iterator[Path]:
    """Files under root, recursively, in a stable order, skipping hidden files and folders."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file():
            yield path


def source_name(path: Path, root: Path, prefix: str = "") -> str:
    rel = path.name if root.is_file() else path.relative_to(root).as_posix()
    return f"{prefix}{rel}"


def _outside(path: Path, root: Path) -> bool:
    """Whether `path` (after following links) lies outside the folder `root`."""
    if root.is_file():
        return False
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return True
    return False


def load_paths(roots: Iterable[str | Path], progress: bool = False, limits: Limits = DEFAULT_LIMITS) -> LoadReport:
    """Load every file under the given folders/files into a report of documents and skipped files.

    With one root, a document's `source` is its path relative to that root; with several, it is
    prefixed by the root's own name so sources stay unique. A link that leads outside its folder is
    skipped unless `limits.follow_symlinks`.
    """
    roots = [Path(r) for r in roots]
    report = LoadReport()
    todo: list[tuple[Path, str]] = []
    for root in roots:
        if not root.exists():
            raise LoaderError(f"no such file or folder: {root}")
        prefix = f"{root.name}/" if len(roots) > 1 and root.is_dir() else ""
        for p in iter_files(root):
            if not limits.follow_symlinks and _outside(p, root):
                report.skipped[source_name(p, root, prefix)] = ("a link to a file outside the indexed folder "
                                                                "(not followed; set follow_symlinks to index it)")
            else:
                todo.append((p, source_name(p, root, prefix)))
    iterator = todo
    if progress:
        from tqdm import tqdm

        iterator = tqdm(todo, desc="Loading", unit="file", leave=False)
    for path, source in iterator:
        if path.suffix.lower() not in _LOADERS:
            report.unsupported.append(source)
            continue
        try:
            report.documents.append(load_file(path, source, limits))
        except LoaderError as e:
            report.skipped[source] = str(e)
    return report
