"""Language-model training: tokenizers, model registry, DP-SGD, the training loop."""
