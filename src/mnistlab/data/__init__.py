"""Data sets: IDX files, the registry, downloads and decoded arrays."""
