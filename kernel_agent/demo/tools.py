"""Built-in example tools for the offline demo: a sizeable dataset and a few lookups.

The data is generated from a fixed seed, so every run (and every replay)
sees the same values. Order totals are in the order's own currency, which
is why the demo has to look up exchange rates before it can add them up.
"""

from __future__ import annotations

import random
from typing import Any

from kernel_agent.tools.tool import tool

MONTHS = ("2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06")
ORDERS_PER_MONTH = 3000
_COUNTRIES = {
    "DE": ("Germany", "Europe", "EUR"), "FR": ("France", "Europe", "EUR"), "IT": ("Italy", "Europe", "EUR"),
    "GB": ("United Kingdom", "Europe", "GBP"), "CH": ("Switzerland", "Europe", "CHF"),
    "US": ("United States", "Americas", "USD"), "CA": ("Canada", "Americas", "CAD"),
    "JP": ("Japan", "Asia", "JPY"), "SE": ("Sweden", "Europe", "SEK"), "AU": ("Australia", "Oceania", "AUD"),
}
# Euros for one unit of each currency, fixed for the demo.
_EUR_PER_UNIT = {"EUR": 1.0, "GBP": 1.17, "CHF": 1.06, "USD": 0.92, "CAD": 0.68, "JPY": 0.0061,
                 "SEK": 0.088, "AUD": 0.61}
_CATEGORIES = ("audio", "cameras", "computing", "gaming", "home", "phones", "wearables")
_PRODUCTS = {f"SKU-{n:03d}": (f"{_CATEGORIES[n % len(_CATEGORIES)].title()} item {n}",
                              _CATEGORIES[n % len(_CATEGORIES)], round(9.5 + (n * 37) % 480, 2))
             for n in range(1, 61)}


@tool(namespace="shop", read_only=True)
def orders(month: str) -> list[dict[str, Any]]:
    """All orders of one month ("2026-01" to "2026-06"), about 3,000 rows: id, day, country, sku, quantity,
    total (in the order's currency) and currency."""
    if month not in MONTHS:
        raise ValueError(f"no orders for {month!r}; months available: {', '.join(MONTHS)}")
    rng = random.Random(f"orders-{month}")
    countries = list(_COUNTRIES)
    weights = [9, 6, 4, 7, 2, 10, 3, 5, 2, 2]
    rows = []
    for index in range(ORDERS_PER_MONTH):
        country = rng.choices(countries, weights)[0]
        sku = f"SKU-{rng.randint(1, len(_PRODUCTS)):03d}"
        quantity = rng.choice((1, 1, 1, 2, 2, 3, 5))
        unit_price_eur = _PRODUCTS[sku][2]
        currency = _COUNTRIES[country][2]
        total = round(quantity * unit_price_eur / _EUR_PER_UNIT[currency], 2)
        rows.append({"id": f"{month}-{index:05d}", "day": f"{month}-{rng.randint(1, 28):02d}", "country": country,
                     "sku": sku, "quantity": quantity, "total": total, "currency": currency})
    return rows


@tool(namespace="shop", read_only=True)
def product(sku: str) -> dict[str, Any]:
    """One product: sku, name, category and list price in EUR."""
    if sku not in _PRODUCTS:
        raise KeyError(f"unknown sku {sku!r}")
    name, category, price = _PRODUCTS[sku]
    return {"sku": sku, "name": name, "category": category, "list_price_eur": price}


@tool(namespace="fx", read_only=True)
def eur_rate(currency: str) -> float:
    """Euros for one unit of ``currency`` (ISO code such as "USD")."""
    if currency not in _EUR_PER_UNIT:
        raise KeyError(f"no rate for {currency!r}")
    return _EUR_PER_UNIT[currency]


@tool(namespace="geo", read_only=True)
def country(code: str) -> dict[str, str]:
    """A country by ISO code: its name, region and currency."""
    if code not in _COUNTRIES:
        raise KeyError(f"unknown country code {code!r}")
    name, region, currency = _COUNTRIES[code]
    return {"code": code, "name": name, "region": region, "currency": currency}


DEMO_TOOLS = [orders, product, eur_rate, country]
