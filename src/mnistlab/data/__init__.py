"""Data sets: the registry, IDX files, downloads, the array cache, splits and device-resident loaders.

Layers, bottom up (imports run one way, checked by tests/test_data_layering.py): sources (the
registry) -> download -> cache, idx, images, splits, synthetic -> raw (`load_raw`, the IDX loader)
-> multimnist, generated (sets made in code), custom (folder:/csv:) -> export, loader (torch).

Importing any part of the package registers every built-in data set: the file-backed ones in
sources.py, the generated ones in generated.py and the path kinds (folder:, csv:) in custom.py
(both imported here).
"""

import mnistlab.data.custom  # noqa: F401  registers the folder: and csv: kinds
import mnistlab.data.generated  # noqa: F401  registers the generated data sets
