"""Certify (see the issue tracker); importing registers its entries."""
