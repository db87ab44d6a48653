class PipelineError(ValueError):
    """A user's mistake in submitting, resuming or compiling a pipeline; the message says what to do."""
