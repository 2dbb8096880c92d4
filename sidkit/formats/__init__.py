"""Exports: formats, the token grid and lookup of generated SIDs."""
