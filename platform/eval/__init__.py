"""Evaluation of a model artifact and the promotion gate: perplexity, multiple choice, safety."""
