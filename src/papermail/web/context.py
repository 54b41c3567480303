"""What every route needs, built once per app: settings, engine, templates, the preview cache."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from jinja2 import Environment
from sqlalchemy.engine import Engine

from papermail.settings import Settings
from papermail.web.preview import PreviewCache


@dataclass
class Web:
    settings: Settings
    engine: Engine
    environment: Environment  # the one Jinja environment (papermail.emails), web/ templates
    static_dir: Path
    preview: PreviewCache
    _versions: dict[str, str] = field(default_factory=dict)

    @property
    def secret(self) -> str:
        return self.settings.secret_key.get_secret_value()

    def static_url(self, name: str) -> str:
        """``/static/NAME?v=HASH``: browsers may cache static files for long, and a new
        release still reaches them at once."""
        version = self._versions.get(name)
        if version is None:
            data = (self.static_dir / name).read_bytes()
            version = self._versions[name] = hashlib.sha256(data).hexdigest()[:10]
        return f"/static/{name}?v={version}"

    def url(self, path: str) -> str:
        """An absolute URL under the public base URL (for mails and the feed)."""
        return self.settings.base_url.rstrip("/") + path


def get_web(request: Request) -> Web:
    return request.app.state.web  # type: ignore[no-any-return]


WebDep = Annotated[Web, Depends(get_web)]
