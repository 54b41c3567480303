"""Errors a user can act on: the CLI prints their message as one line, never a traceback."""


class PapermailError(Exception):
    """Base for every error papermail reports to a person."""


class SourceError(PapermailError):
    """A feed or page could not be read or parsed at all."""


class DeliveryError(PapermailError):
    """Mail could not be handed to the mail server."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
