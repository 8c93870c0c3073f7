"""Using a registry model outside training: its ONNX export, batch prediction and an HTTP endpoint."""
