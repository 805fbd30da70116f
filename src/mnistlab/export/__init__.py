"""ONNX export and the onnxruntime predictor (the `onnx` extra: onnx, onnxscript, onnxruntime).

`onnx_export.export_onnx` turns a run's checkpoint into a self-contained .onnx file (normalisation
inside the graph, metadata for a consumer) and checks it against PyTorch on the run's test set.
`runtime.OnnxPredictor` runs such a file through onnxruntime alone: it never imports torch.
Importing this package imports neither.
"""

INSTALL_HINT = "ONNX export and .onnx files need the onnx extra: pip install 'mnistlab[onnx]' (or pip install -e '.[onnx]')"
