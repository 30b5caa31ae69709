"""The ISVOS network, one readable component per file (the README's model table maps paper sections to modules)."""
