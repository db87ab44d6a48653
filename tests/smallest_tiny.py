"""Settings for the tiny lifecycle at its smallest, for the tests that run all of it."""

# The tiny lifecycle at its smallest: every step runs, each for a step or two, with tiny's own model,
# context lengths and layouts, and every threshold of the gate open (two steps of each post-training
# stage teach nothing) so the model is promoted and the deploy step runs.
SMALLEST_TINY = {
    "data.max_documents_per_source": "60", "pretrain.total_tokens": "4096",
    "long_context.total_tokens": "4096", "long_context.global_batch_tokens": "2048",
    "long_context.gate.max_extra_steps_per_stage": "0", "long_context.gate.windows": "8",
    "long_context.gate.needle_depths": "[0.5]",
    "anneal.total_tokens": "2048", "anneal.global_batch_tokens": "2048",
    "post_training.sft.steps": "2", "post_training.dpo.steps": "2", "post_training.safety.steps": "2",
    "post_training.safety.rate_prompts": "4", "post_training.sft.max_eval_examples": "8",
    "post_training.dpo.max_eval_pairs": "8", "post_training.safety.max_eval_examples": "8",
    "eval.safety_prompts": "4", "eval.max_new_tokens": "8", "eval_gate.max_validation_perplexity": "1e9",
    "eval_gate.min_multiple_choice_accuracy": "0", "eval_gate.max_violation_rate": "1", "eval_gate.max_false_refusal_rate": "1",
}


def set_arguments(settings: dict[str, str]) -> list[str]:
    """`--set KEY=VALUE` arguments for `settings`."""
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
