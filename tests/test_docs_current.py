"""The generated documents are current, and every hook is in the guide
(issue 11.3): docs/plugins.md ends with the reference generated from
hookspecs.py, docs/conformance.md is what `dicom-gateway conformance` prints on
embedded defaults. Regenerate both with `python scripts/gen_docs.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import docgen

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_plugin_guide_ends_with_the_current_hook_reference():
    text = (DOCS / "plugins.md").read_text()
    assert text == docgen.plugins_doc(text), "docs/plugins.md is stale: run python scripts/gen_docs.py"


@pytest.mark.parametrize("hook", docgen.hook_names())
def test_every_hook_has_a_line_in_the_guide(hook):
    guide = (DOCS / "plugins.md").read_text().split(docgen.REFERENCE_START, 1)[0]
    assert f"`{hook}`" in guide, f"the hand-written part of docs/plugins.md does not mention {hook}"


def test_conformance_doc_is_current():
    assert (DOCS / "conformance.md").read_text() == docgen.conformance_doc(), \
        "docs/conformance.md is stale: run python scripts/gen_docs.py"
