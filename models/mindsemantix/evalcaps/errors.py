"""The one exception evalcaps raises for input or environment problems the user can fix."""


class EvalCapsError(Exception):
    """A failure the user can fix; the message is one sentence saying what was wrong and what to do."""
