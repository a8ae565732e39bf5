"""The one exception type that means "the user asked for something wrong", and a command-line
parser that reports a wrong flag as one."""
import argparse


class UserError(Exception):
    """A mistake in a config, flag, data path or sweep file.

    The CLI prints its message as one line on stderr and exits with code 2.
    The message names the offending key, path or value and what is expected.
    """


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a wrong or missing argument raises UserError (one line, exit 2), not a usage dump."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")
