"""One exception type per kind of user mistake; each message names the file/field and the fix."""


class LitCodeLlamaError(Exception):
    """Base class: a user-facing error whose message says what is wrong and what to do."""


class ConfigError(LitCodeLlamaError, ValueError):
    """A config file, preset or field is invalid."""


class CheckpointError(LitCodeLlamaError, ValueError):
    """A checkpoint is missing, unreadable, or does not match the model."""
