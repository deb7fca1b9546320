"""pvarchiver: an EPICS Archiver Appliance re-implementation in Python.

Storage is byte-compatible with the Java AA's PlainPB files so sites can move data between the
two systems in both directions.
"""

__version__ = "0.1.0"
