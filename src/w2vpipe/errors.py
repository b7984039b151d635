"""The one exception the pipeline shows to users as a single line."""


class PipelineError(Exception):
    """A problem the user can fix: the message names it and says how to fix it."""
