"""File formats at the bottom of the stack: the checkpoint file (safetensors + JSON metadata)."""
