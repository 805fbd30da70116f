"""Runs on disk: the checkpoint format (one reader for every kind), run folders, and the session that wires config -> data -> trainer -> run folder."""
