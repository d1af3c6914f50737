"""Capture: run the user's script under torch.profiler (the only package importing torch at module level)."""
