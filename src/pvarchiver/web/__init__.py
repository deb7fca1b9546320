"""HTTP, and only here: the AA's web applications on one port (``/retrieval``, ``/mgmt`` and
its UI, ``/metrics``) over the services in :mod:`pvarchiver.retrieval` and
:mod:`pvarchiver.mgmt`. Every BPL action is declared the same way (:mod:`.bpl`)."""
