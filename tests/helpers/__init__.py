"""Helpers shared by several test modules (test modules import from here, never from each
other). ``tests/ioc.py``, ``tests/aio.py``, ``tests/http_server.py``, ``tests/ca_tools.py``
and the deploy harness are helpers of the same kind that still sit one folder up."""
