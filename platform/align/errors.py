class AlignmentError(ValueError):
    """A post-training stage cannot start with these inputs; the message says what to change."""
