"""The promise every parser keeps: records, or a SourceError that says what is wrong. Never a
RecursionError (deeply nested JSON), a UnicodeDecodeError (feedparser on odd bytes) or a TypeError
(a feed element without text) from a hostile or broken input (issue 15 #10)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from papermail.errors import SourceError

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def parser(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn anything but a SourceError escaping the decorated parser into one; the unexpected
    ones are logged with their traceback, since they are bugs to fix."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except SourceError:
                raise
            except RecursionError as exc:
                raise SourceError(f"{what}: nested too deeply to read") from exc
            except UnicodeError as exc:
                raise SourceError(f"{what}: undecodable text ({exc})") from exc
            except Exception as exc:  # the parser's promise, see above
                log.warning("%s: parser failed on its input", what, exc_info=True)
                raise SourceError(f"{what}: unreadable ({type(exc).__name__}: {exc})") from exc

        return guarded

    return decorate
