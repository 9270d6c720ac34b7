"""Stability (see the issue tracker); importing registers its entries."""
