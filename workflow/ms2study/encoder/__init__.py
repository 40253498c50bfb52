"""The transformer spectrum encoder: model definition, checkpoints. Depends on core."""
