"""Exceptions that the CLI maps to one-line messages and documented exit codes.

Exit codes: 0 ok, 1 gate failed, 2 bad input or config, 3 missing dependency.
"""


class EdgekitError(Exception):
    """Base class: the message is one line naming the thing and the fix."""

    exit_code = 2


class BadInputError(EdgekitError):
    """A file, shape, config value or dataset that edgekit cannot use."""

    exit_code = 2


class MissingDependencyError(EdgekitError):
    """An optional package or runtime is not installed; the message says how to install it."""

    exit_code = 3


class GateFailedError(EdgekitError):
    """A quality gate (error in degrees, size, ...) did not hold."""

    exit_code = 1
