"""The price table: the only place a price comes from.

`load_prices()` reads scripts/cost/prices.json and applies an optional override file of
the same shape. Every lookup goes through `PriceTable.value(key)`, which also records the
keys used so a result can list exactly which prices (and sources) it rests on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PRICES = Path(__file__).with_name("prices.json")
REQUIRED_FIELDS = ("value", "unit", "region", "source", "as_of", "verified")
VERIFIED_LEVELS = ("aws", "secondary", "unverified")


class PriceError(ValueError):
    """A price file is malformed, or a needed price is missing."""


@dataclass(frozen=True)
class Price:
    key: str
    value: float
    unit: str
    region: str
    source: str
    as_of: str
    verified: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "region": self.region,
            "source": self.source,
            "as_of": self.as_of,
            "verified": self.verified,
            "note": self.note,
        }


@dataclass
class PriceTable:
    entries: dict[str, Price]
    overridden: frozenset[str] = frozenset()
    used: set[str] = field(default_factory=set)

    def value(self, key: str) -> float:
        try:
            price = self.entries[key]
        except KeyError:
            raise PriceError(
                f"no price {key!r} in the price table; add it with --prices FILE"
            ) from None
        self.used.add(key)
        return price.value

    def has(self, key: str) -> bool:
        return key in self.entries

    def used_prices(self) -> dict[str, dict[str, Any]]:
        return {key: self.entries[key].as_dict() for key in sorted(self.used)}


def _parse_entry(key: str, raw: Any, where: str) -> Price:
    if not isinstance(raw, dict):
        raise PriceError(f"{where}: entry {key!r} must be an object")
    missing = [name for name in REQUIRED_FIELDS if name not in raw]
    if missing:
        raise PriceError(f"{where}: entry {key!r} lacks {', '.join(missing)}")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PriceError(f"{where}: entry {key!r} value must be a number >= 0")
    if raw["verified"] not in VERIFIED_LEVELS:
        raise PriceError(
            f"{where}: entry {key!r} verified must be one of {', '.join(VERIFIED_LEVELS)}"
        )
    return Price(
        key=key,
        value=float(value),
        unit=str(raw["unit"]),
        region=str(raw["region"]),
        source=str(raw["source"]),
        as_of=str(raw["as_of"]),
        verified=str(raw["verified"]),
        note=str(raw.get("note", "")),
    )


def _read_entries(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PriceError(f"price file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise PriceError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise PriceError(f'{path}: expected an object with an "entries" object')
    return data["entries"]


def load_prices(overrides: Path | None = None, base: Path = DEFAULT_PRICES) -> PriceTable:
    """The table from `base`, with entries from `overrides` laid over it. An override
    entry may give only `value` for a known key (its other fields default to the base
    entry's, with the source set to the override file); a new key needs every field."""
    entries = {key: _parse_entry(key, raw, str(base)) for key, raw in _read_entries(base).items()}
    overridden: set[str] = set()
    if overrides is not None:
        for key, raw in _read_entries(overrides).items():
            if not isinstance(raw, dict):
                raise PriceError(f"{overrides}: entry {key!r} must be an object")
            merged: dict[str, Any] = {}
            if key in entries:
                merged.update(entries[key].as_dict())
                merged["source"] = f"override file {overrides}"
                merged["verified"] = "unverified"
            merged.update(raw)
            entries[key] = _parse_entry(key, merged, str(overrides))
            overridden.add(key)
    return PriceTable(entries=entries, overridden=frozenset(overridden))
