class ExternalShutdownException(Exception):
    """Context has been shutdown."""
