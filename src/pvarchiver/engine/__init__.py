"""The archiving engine: per-PV sampling, buffers and the write loop into the STS.

This package holds the logic that does not depend on the network: what to keep of each
event, how much memory buffers may use, which fields to attach, and how buffers reach the
store. The Channel Access side (``pvarchiver.ca``) feeds it events.
"""
