"""Runs: a run folder (provenance, locks, overwrite rules) and the committed results index."""
