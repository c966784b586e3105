"""Regenerate the generated documents: docs/conformance.md (embedded defaults)
and the hook reference in docs/plugins.md. `tests/test_docs_current.py` fails
when either is stale."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from gateway.docgen import conformance_doc, plugins_doc  # noqa: E402

(ROOT / "docs" / "conformance.md").write_text(conformance_doc())
guide = ROOT / "docs" / "plugins.md"
guide.write_text(plugins_doc(guide.read_text()))
print("docs/conformance.md, docs/plugins.md regenerated")
