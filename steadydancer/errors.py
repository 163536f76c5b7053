"""User-facing errors.

Everything a user can cause (a photo with nobody in it, a corrupt video, too many frames) is raised
as :class:`SteadyDancerInputError` with a message that says what happened *and what to do*. The
command line prints it and exits non-zero; the app turns it into a ``gr.Error``. Anything else is a
bug and keeps its traceback.
"""


class SteadyDancerInputError(ValueError):
    """Bad input from the user: the message is shown to them as it is."""


class MissingWeightsError(RuntimeError):
    """Model weights are not available here: the message says what to download or set."""
