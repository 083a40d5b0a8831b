"""Training-data extraction: generation, membership metrics, verification (Carlini et al. 2021)."""
