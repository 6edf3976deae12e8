"""The one exception type the trainer raises for problems a user can fix."""


class TrainerInputError(ValueError):
    """Bad input, configuration or environment; the message says what and how to fix it."""
