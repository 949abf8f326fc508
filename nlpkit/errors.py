"""Exceptions with messages meant for the person running nlpkit, not for a traceback reader."""


class NlpkitError(Exception):
    """Base class: caught by the CLIs and printed as one clear message."""


class ConfigError(NlpkitError):
    """The composed configuration is invalid (unknown key, unknown choice, bad value)."""


class DataError(NlpkitError):
    """An input file is missing or has a bad row. The message names the file and line."""


class ArtifactError(NlpkitError):
    """A run directory, checkpoint or other artifact is missing, corrupt or unsafe."""


class MissingArtifactError(ArtifactError, FileNotFoundError):
    """An artifact file (exported model, checkpoint, vocabulary) does not exist where it is looked for."""


class ExportError(NlpkitError):
    """The run cannot be exported as one faithful ONNX file (unsupported config or failed parity)."""
