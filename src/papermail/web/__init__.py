"""The subscriber web app: sign up, manage preferences, unsubscribe, read digests and papers."""

from papermail.web.app import create_app

__all__ = ["create_app"]
