"""One exception type for every problem the user can fix: its message is one clear sentence.

The CLI prints it, the HTTP service answers it with a 4xx, the UI shows it in a box;
nobody shows a traceback.
"""


class UserError(Exception):
    """A bad input or a missing resource, described in one sentence."""


class NotFoundError(UserError):
    """The thing asked for (index, feature, source) does not exist."""
