"""Exceptions the harness raises on purpose; each carries a one-line, user-facing message."""


class HarnessError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class ConfigError(HarnessError):
    """An invalid configuration value; the message names the command-line key."""


class DataError(HarnessError):
    """Unusable training data; the message names the file and line or record."""


class HubUnavailableError(HarnessError):
    """A model or dataset that lives on a hub could not be reached."""
