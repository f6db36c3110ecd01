"""Reporting: results frames, tables, claims checks, plots, and the report registry."""
