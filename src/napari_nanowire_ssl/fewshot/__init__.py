"""Few-shot learning on frozen encoder features: image features and the evaluation protocol."""
