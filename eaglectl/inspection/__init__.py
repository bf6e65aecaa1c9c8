"""`inspect`: a checkpoint's layout, tensors, every release's loader verdict and the findings, assembled."""
