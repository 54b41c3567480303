"""papermail: a self-hosted, personalized research-paper newsletter."""

__version__ = "0.1.0"
