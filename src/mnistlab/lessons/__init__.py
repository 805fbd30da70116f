"""The classic lessons standing on the core: experiments (one module per lesson), the NumPy engine, the character LM, and tabular regression."""
