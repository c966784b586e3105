"""Test support for dicom-gateway and its plugins.

``gateway.testing.corpus`` writes the project's deterministic DICOM test corpus
(every STO-1 SOP class in every STO-2 syntax, with the private, long-value,
character-set and curve cases of DAT-1..DAT-3)::

    python -m gateway.testing.corpus --out /tmp/corpus --profile small --syntax all

or, in a test, ``gateway.testing.corpus.generate(tmp_path, profile="small", syntax="all")``.
"""
