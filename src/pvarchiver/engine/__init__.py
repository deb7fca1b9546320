"""The archiving engine: per-PV sampling, buffers and the write loop into the STS.

This package holds the logic that does not depend on the network: what to keep of each
event, how much memory buffers may use, which fields to attach, and how buffers reach the
store. Sources feed it events through one protocol-neutral interface (``source.Source``);
Channel Access (``ca_source.CASource``, over ``pvarchiver.ca``) is the first. Every sample
kept is also written to the write-ahead journal (``journal``), replayed at start.
"""
