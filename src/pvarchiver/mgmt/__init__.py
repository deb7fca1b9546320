"""Management: the PV registry (SQLite, AA tables), policies, the archive workflow and the
``/mgmt/bpl`` API. See ``docs/mgmt.md``."""
