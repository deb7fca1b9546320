"""CA gateway: ca-gateway compatible configuration (pvlist, ACF, CALC, command line) and server.

The configuration modules (``pvlist``, ``acf``, ``calc``, ``options``, ``access``) are pure
code with no sockets, so every rule can be unit-tested; the server side builds on them.
"""
