"""The error types every stage raises for the conditions the CLI runner maps to exit codes.

* :class:`ConfigError` (a ValueError): a config value is missing, of the wrong type or out of range;
  the message names the key. Like every ValueError / FileNotFoundError it is *bad input*: exit 2.
* :class:`InputError`: a mixin for a stage's own bad-input errors that are no ValueError (e.g. a download
  whose checksum does not match): exit 2 as well.
* :class:`NonFiniteLossError` (a FloatingPointError): training diverged to NaN/inf: exit 3.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value the schema rejects; the message names the key."""


class InputError(Exception):
    """Bad input the user can fix (a wrong URL, a corrupt archive); the message names it."""


class NonFiniteLossError(FloatingPointError):
    """A training loss (or a tensor it depends on) became NaN or infinite."""
