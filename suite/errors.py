"""The one exception type that means "the user asked for something wrong"."""


class UserError(Exception):
    """A mistake in a config, flag, data path or sweep file.

    The CLI prints its message as one line on stderr and exits with code 2.
    The message names the offending key, path or value and what is expected.
    """
