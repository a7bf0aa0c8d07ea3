"""The web app: `python app.py [--host H] [--port P] [--index-dir D] [--upload-dir U]` (same as `rag serve`).

Binds 127.0.0.1 unless `--host` says otherwise; the UI lives in `rag/webapp.py`, the logic in the library.
"""

import sys

from rag.cli import main
from rag.webapp import build_app

__all__ = ["build_app", "main"]

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
