"""Our own PV Access (EPICS 7) client: sans-I/O codec and protocol, thin asyncio layer.

``codec`` (sizes, strings, BitSet, FieldDesc and the introspection cache), ``data``
(PVData values, partial updates, the AA's generic bytes), ``request`` (pvRequest),
``protocol`` (messages and the per-connection state machine), ``search`` (UDP/TCP search),
``env`` (``EPICS_PVA_*``), ``client`` (asyncio). p4p/pvxs are used only by the tests.
"""
