"""The web app: `python app.py [--host H] [--port P] [--index-dir D] [--upload-dir U]` (same as `rag serve`).

Binds 127.0.0.1 unless `--host` says otherwise; all the UI logic lives in `rag/webapp.py`.
"""

import sys

from rag.webapp import build_app, main

__all__ = ["build_app", "main"]

if __name__ == "__main__":
    sys.exit(main())
