"""PyTorch image-classifier lifecycle, versioned in Weights & Biases."""
