"""The AA's data retrieval API: source merge, post-processors and response formats."""
