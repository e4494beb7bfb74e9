"""One exception type for every problem the user can fix: its message is one clear sentence.

The CLI prints it, the HTTP service answers it with a 4xx, the UI shows it in a box;
nobody shows a traceback.
"""


class UserError(Exception):
    """A bad input or a missing resource, described in one sentence."""


class NotFoundError(UserError):
    """The thing asked for (index, feature, source) does not exist."""


def check_feature_id(feature_id: int, d_sae: int | None, holder: str = "this SAE") -> int:
    """The one "feature N does not exist" check (index, engine, team data, links); `d_sae` None means
    the number of features is not known yet, so only a negative id is refused."""
    too_big = d_sae is not None and feature_id >= d_sae
    if not isinstance(feature_id, int) or isinstance(feature_id, bool) or feature_id < 0 or too_big:
        valid = f"{holder} has features 0 to {d_sae - 1}" if d_sae else "feature ids are non-negative"
        raise NotFoundError(f"Feature {feature_id} does not exist; {valid}.")
    return feature_id
