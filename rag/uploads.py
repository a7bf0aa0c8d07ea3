"""Adding files to an index: checked, copied into an upload folder, then indexed next to what is there.

Used by `Assistant.add_files` (and so by the web app's upload box). A file that cannot be read is
reported with its reason and never lands in the folder; an upload never replaces a corpus document.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .config import EXTENSIONS, Settings
from .indexer import BuildSummary, build_index
from .loaders import DEFAULT_LIMITS, Limits, LoaderError, load_file

MAX_NAME_CHARS = 100  # an upload's file stem is cut to this (file systems allow 255 bytes; not tuned)


@dataclass
class UploadReport:
    """What `add_files` did: names added, {name: reason} skipped, the index build (None if none ran)."""

    added: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    summary: BuildSummary | None = None


def resolve_upload_dir(flag: str | Path | None = None, env: dict | None = None) -> Path:
    """`--upload-dir`, else RAG_UPLOAD_DIR, else `uploads/` in the working directory."""
    env = os.environ if env is None else env
    return Path(flag or env.get("RAG_UPLOAD_DIR") or "uploads")


def safe_upload_name(name: str) -> str:
    """A plain file name: no folders, no leading dot (hidden files are not indexed), no odd characters."""
    base = Path(str(name).replace("\\", "/")).name
    stem, suffix = os.path.splitext(base)
    stem = re.sub(r"[^\w\- ]+", "_", stem).strip(" ._") or "upload"
    return f"{stem[:MAX_NAME_CHARS]}{suffix.lower()}"


def _copy_atomically(src: Path, dest: Path) -> None:
    """Copy into a hidden temporary file beside `dest`, then rename it into place: a process killed
    mid-copy leaves no partial file under the upload's name (a hidden `.part` file is never indexed)."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_uploads(files: Iterable[str | Path], upload_dir: Path, taken: set[str], limits: Limits = DEFAULT_LIMITS
                 ) -> tuple[list[str], dict[str, str]]:
    """Copy the readable files into `upload_dir`; returns (names added, {name: reason} skipped).

    Each file is loaded first, so an unreadable one never lands in the folder. A name already used by
    a document that is not an upload (in `taken`) gets an `upload-` prefix: an upload never replaces
    a corpus document. Uploading a file under an existing upload's name replaces that upload.
    """
    upload_dir.mkdir(parents=True, exist_ok=True)
    added: list[str] = []
    skipped: dict[str, str] = {}
    for f in files:
        src = Path(f)
        name = safe_upload_name(src.name)
        if Path(name).suffix not in EXTENSIONS:
            skipped[src.name] = f"unsupported file type; use one of {', '.join(EXTENSIONS)}"
            continue
        try:
            load_file(src, name, limits)
        except LoaderError as e:
            skipped[src.name] = str(e)
            continue
        if name in taken and not (upload_dir / name).exists():
            name = f"upload-{name}"
        try:
            _copy_atomically(src, upload_dir / name)
        except OSError as e:
            skipped[src.name] = f"cannot copy: {e.strerror or e}"
            continue
        added.append(name)
    return added, skipped


def add_files(files: Iterable[str | Path], upload_dir: str | Path, settings: Settings,
              indexed: Iterable[str] = (), progress: bool = False) -> UploadReport:
    """Copy the readable `files` into `upload_dir` and index that folder into settings.index_dir, keeping
    every document already indexed (`indexed`: their sources). Raises what `build_index` raises."""
    upload_dir = Path(upload_dir)
    uploaded = {p.name for p in upload_dir.iterdir()} if upload_dir.is_dir() else set()
    added, skipped = copy_uploads([f for f in files if f], upload_dir, set(indexed) - uploaded, Limits.of(settings))
    report = UploadReport(added, skipped)
    if not added:
        return report
    report.summary = build_index([upload_dir], settings.index_dir, settings, prune=False, progress=progress)
    for name in [a for a in added if a in report.summary.skipped]:
        skipped[name] = report.summary.skipped[name]
        added.remove(name)
        (upload_dir / name).unlink(missing_ok=True)
    return report
