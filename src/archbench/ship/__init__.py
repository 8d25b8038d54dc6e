"""Shipping a trained run out of archbench: owns loading it for use (`load`), predicting on new images or
scenes (`predict`) and exporting it to ONNX or TorchScript (`export`); never trains and never writes into a
run folder.

Modules, in the order a user meets them: `load` (`load_run` → `Run`: the record, the verified model, its
predictions and history, and the exact evaluation preprocessing), `predict` (`archbench predict`), `export`
(`archbench export`). Importing this package imports no heavy library.
"""
