"""Training one potential: configuration, data and batches, the loop, results (public names in torch_training)."""
