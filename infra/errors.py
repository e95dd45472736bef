class InfraError(Exception):
    """A failure to report to the person as one line (no traceback), then exit non-zero."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code
