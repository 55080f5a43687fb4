"""The one exception labsupport raises at a learner: a clear message, shown without a traceback."""


class LabError(Exception):
    """A mistake in how the lab is used (not a bug in the learner's app)."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback that would point into labsupport.
        return [f"LabError: {self}"]
