"""Training one potential: configuration, inputs, loss, sampling, the loop and its results (public names in
``aenet_core.torch_training``)."""
