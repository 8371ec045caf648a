"""The `gep` command line: one entry point, one module per subcommand group."""


class UsageError(Exception):
    """A command line that cannot be carried out; the message says why and what to do."""
