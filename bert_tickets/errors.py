"""The one exception type that the command line turns into a one-line error and exit code 2."""


class UserError(ValueError):
    """A problem with the user's input (task, data, config, model): reported as one line, exit 2."""
