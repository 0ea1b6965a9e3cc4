"""Byte data from files: listing, a split by file, reading."""
