"""A PVWS-compatible websocket (``/pvws/pv``) served by the archiver itself: live values of
archived PVs from the engine's own monitors, other PVs through the CA client on demand.

:mod:`.values` and :mod:`.session` are the protocol without I/O; :mod:`.hub` connects
sockets to live values; :mod:`.web` is the Starlette layer. ``docs/pvws.md`` describes it.
"""
