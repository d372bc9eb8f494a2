"""The service's default-epochs rule: one implementation for the cost estimate, the emulator and the docs.

What a job trains for when ``n_epochs`` is not given ("auto", ``-1`` until the job starts): 3 epochs, raised
so that at least 100 examples are seen (at most 25 epochs), lowered so that at most 25,000 are (at least 1).
The rule is the OpenAI cookbook's (``examples/Chat_finetuning_data_prep.ipynb``, integer division as there);
Azure documents no other. docs/validation.md shows its figures; a test keeps them equal to this function.
"""

from __future__ import annotations

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def default_epochs(n_examples: int) -> int:
    """Epochs of a job on ``n_examples`` training examples (those actually trained on, after any split).

    Lowering starts once examples x 3 exceeds 25,000 (8,334 examples and up), as in the cookbook.
    """
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS
