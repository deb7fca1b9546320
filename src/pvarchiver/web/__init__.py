"""HTTP: the AA's web applications (retrieval now; mgmt, engine, etl later) on one port."""
