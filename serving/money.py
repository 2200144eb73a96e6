"""Exact money: amounts are integer minor units everywhere inside the service.

Requests carry amounts as JSON numbers (decoded as ``Decimal``, never float) or decimal
strings with at most the currency's decimals; the policy's caps and limits are converted
once, when the policy loads; the ledger stores integers. Only a response turns minor units
back into a JSON number, whose text is the exact decimal (``270`` minor units of CNY ->
``2.7``): ``units / 10**decimals`` is the double nearest the decimal, and a double prints as
the shortest text that reads back to it, which for fewer than 15 significant digits is the
decimal itself.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

DEFAULT_DECIMALS = 2
# ISO 4217 currencies whose minor unit is not 1/100.
CURRENCY_DECIMALS: dict[str, int] = {
    "BHD": 3,
    "BIF": 0,
    "CLP": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "TND": 3,
    "UGX": 0,
    "VND": 0,
}
MAX_MINOR = 10**15  # beyond this a double no longer prints every minor unit exactly


class MoneyError(ValueError):
    """An amount that is not a decimal with at most the currency's decimals."""


def currency_decimals(currency: str) -> int:
    """Digits after the decimal point of ``currency`` (ISO 4217; 2 unless listed otherwise)."""
    return CURRENCY_DECIMALS.get(currency, DEFAULT_DECIMALS)


def to_minor(value: object, decimals: int) -> int:
    """Convert an amount to integer minor units, exactly.

    Args:
        value: A ``Decimal``, an ``int``, or a decimal string such as ``"12.30"``
            (floats are refused: decode JSON with ``parse_float=Decimal``).
        decimals: The currency's decimals (``currency_decimals``).

    Returns:
        The amount in minor units (``Decimal("0.09")``, 2 -> ``9``).

    Raises:
        MoneyError: Not a finite decimal, more than ``decimals`` digits after the point, or
            too large to handle exactly.
    """
    if isinstance(value, bool):
        raise MoneyError("must be a number or a decimal string")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if text != value or not text or text[0] in "+" or "_" in text:
            raise MoneyError("must be a decimal string such as 12.30")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise MoneyError("must be a decimal string such as 12.30") from None
        if "e" in text.lower():
            raise MoneyError("must be a decimal string such as 12.30, without an exponent")
    else:
        raise MoneyError("must be a number or a decimal string")
    if not amount.is_finite():
        raise MoneyError("must be a finite number")
    if not amount.is_zero() and amount.adjusted() > 30:  # before any arithmetic on a 1e999999
        raise MoneyError("is too large")
    scaled = amount.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"must have at most {decimals} decimal{'s' if decimals != 1 else ''}")
    units = int(scaled)
    if abs(units) >= MAX_MINOR:
        raise MoneyError("is too large")
    return units


def from_minor(units: int, decimals: int) -> int | float:
    """A JSON-ready number whose text is the exact amount (``270``, 2 -> ``2.7``).

    Whole amounts come back as ``int`` (``1500``); others as the float nearest the decimal,
    which ``json.dumps`` prints as exactly that decimal (see the module docstring).
    """
    whole, rest = divmod(units, 10**decimals)
    return whole if rest == 0 else units / 10**decimals


def fmt(units: int, decimals: int) -> str:
    """Human-readable amount for messages (``150000``, 2 -> ``"1500"``; ``9`` -> ``"0.09"``)."""
    return str(from_minor(units, decimals))


def _decimal_json(value: object) -> float | str:
    if isinstance(value, Decimal):
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_text(value: object) -> str:
    """Compact JSON of a decoded request body.

    A ``Decimal`` is written as a number when a double prints as exactly that decimal
    (``0.1``, ``80.0``), otherwise as its decimal text in a string (nothing is rounded).
    """
    return json.dumps(value, separators=(",", ":"), default=_decimal_json)
