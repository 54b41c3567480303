"""Reading the HTML forms into preferences, with errors keyed by field for the templates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from papermail.models import Frequency
from papermail.services.subscriptions import InvalidInput, Preferences, validate_preferences

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SNOOZE_WEEKS = (1, 2, 3, 4, 6, 8, 12)


def split_phrases(text: str) -> tuple[str, ...]:
    """A textarea holds one keyword per line or comma-separated ones (cleaned later)."""
    return tuple(line for line in text.splitlines() if line.strip())


def join_phrases(phrases: tuple[str, ...]) -> str:
    return "\n".join(phrases)


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    """Every IANA zone name this system knows (the lookup walks the tz database: cached)."""
    return frozenset(available_timezones()) | {"UTC"}


@lru_cache(maxsize=1)
def zone_groups() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """IANA zones for a select, grouped by area ("Europe", ...), without legacy aliases."""
    groups: dict[str, list[str]] = {}
    for name in sorted(known_zones()):
        area, _, place = name.partition("/")
        if place and area not in {"Etc", "SystemV", "US", "Brazil", "Canada", "Chile", "Mexico"}:
            groups.setdefault(area, []).append(name)
    return (("", ("UTC",)), *((area, tuple(names)) for area, names in sorted(groups.items())))


def local_today(timezone: str, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(timezone)).date()


@dataclass
class PreferencesForm:
    """The manage form's values as typed (strings), so a refused form comes back as it was."""

    keywords: str = ""
    excluded: str = ""
    frequency: str = Frequency.daily.value
    weekly_day: str = "0"
    send_hour: str = "7"
    timezone: str = "UTC"
    max_papers: str = "10"
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_preferences(cls, prefs: Preferences) -> PreferencesForm:
        return cls(
            keywords=join_phrases(prefs.keywords),
            excluded=join_phrases(prefs.excluded),
            frequency=Frequency(prefs.frequency).value,
            weekly_day=str(prefs.weekly_day),
            send_hour=str(prefs.send_hour),
            timezone=prefs.timezone,
            max_papers=str(prefs.max_papers),
        )

    @classmethod
    def from_post(cls, data: Mapping[str, str]) -> PreferencesForm:
        return cls(**{name: str(data.get(name, "")) for name in _FIELDS})

    def _number(self, name: str, label: str) -> int:
        value = getattr(self, name).strip()
        if not value.lstrip("-").isdigit() or len(value) > 4:
            raise InvalidInput(f"{label} must be a whole number", field=name)
        return int(value)

    def preferences(self) -> Preferences | None:
        """Validated preferences, or None with `errors` filled in (one message per field)."""
        self.errors = {}
        numbers: dict[str, int] = {}
        for name, label in (
            ("weekly_day", "weekday"),
            ("send_hour", "send hour"),
            ("max_papers", "papers per digest"),
        ):
            try:
                numbers[name] = self._number(name, label)
            except InvalidInput as exc:
                self.errors[exc.field] = str(exc)
        if self.frequency not in {f.value for f in Frequency}:
            self.errors["frequency"] = "choose daily, weekly or paused"
        if self.errors:
            return None
        try:
            return validate_preferences(
                Preferences(
                    keywords=split_phrases(self.keywords),
                    excluded=split_phrases(self.excluded),
                    timezone=self.timezone.strip(),
                    frequency=Frequency(self.frequency),
                    **numbers,
                )
            )
        except InvalidInput as exc:
            self.errors[exc.field or "form"] = str(exc)
            return None


_FIELDS = ("keywords", "excluded", "frequency", "weekly_day", "send_hour", "timezone", "max_papers")
