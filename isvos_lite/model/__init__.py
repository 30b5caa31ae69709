"""The ISVOS network, one readable component per file (see DESIGN.md's paper-to-module table)."""
