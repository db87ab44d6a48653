class EvalInputError(ValueError):
    """An evaluation input (model, shards, benchmark data, config) is unusable; the message says what to do."""
