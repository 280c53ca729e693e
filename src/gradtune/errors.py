"""The one exception type users see: a message that says what is wrong, where, and what to do."""


class GradtuneError(Exception):
    """A problem with the user's input (config, data, run directory). The CLI prints the message
    alone, without a traceback."""
