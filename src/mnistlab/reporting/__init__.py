"""Figures (matplotlib, Agg) and the one HTML writer with its stylesheet."""
