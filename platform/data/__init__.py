"""Data preparation: corpora -> clean, de-duplicated, tokenized, packed shards."""
