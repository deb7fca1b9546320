"""Management: the PV registry (SQLite, AA tables), policies, the archive workflow, status and
reports; no HTTP (``/mgmt/bpl`` is served by :mod:`pvarchiver.web`). See ``docs/mgmt.md``."""
