# The scripted model's replies for `kernel-agent demo` (percent format: see kernel_agent/models/scripted.py).
# A markdown cell is the model's message; the code cell after it is the code it sends.

# %% [markdown]
# I'll load the three months of Q1 orders into the kernel (concurrently) and look at their shape
# without printing them all.

# %%
import asyncio

months = ["2026-01", "2026-02", "2026-03"]
batches = await asyncio.gather(*(tools.shop.orders.aio(month) for month in months))
orders = [row for batch in batches for row in batch]
progress("loaded Q1 orders", done=len(orders))
print(len(orders), "orders; the first:", orders[0])
print("currencies:", sorted({o["currency"] for o in orders}))

# %% [markdown]
# Totals are in each order's own currency, so I'll convert them to EUR with one rate lookup per currency.

# %%
rates = {currency: tools.fx.eur_rate(currency) for currency in sorted({o["currency"] for o in orders})}
for o in orders:
    o["eur"] = o["amount"] * rates[o["currency"]]

# %% [markdown]
# The field is called `total`, not `amount`. Fixing that.

# %%
for o in orders:
    o["eur"] = round(o["total"] * rates[o["currency"]], 2)
print(f"Q1 revenue: EUR {sum(o['eur'] for o in orders):,.2f} from {len(orders):,} orders")

# %% [markdown]
# Now the categories: one product lookup per distinct SKU, all at once.

# %%
skus = sorted({o["sku"] for o in orders})
products = await asyncio.gather(*(tools.shop.product.aio(sku) for sku in skus))
category_of = {p["sku"]: p["category"] for p in products}
by_category = {}
for o in orders:
    category = category_of[o["sku"]]
    by_category[category] = by_category.get(category, 0) + o["eur"]
for category, revenue in sorted(by_category.items(), key=lambda item: -item[1]):
    print(f"{category:<10} EUR {revenue:>12,.2f}")

# %% [markdown]
# Which country bought the most of the leading category, and how did it move from January to March?

# %%
best = max(by_category, key=by_category.get)
in_best = [o for o in orders if category_of[o["sku"]] == best]
by_country = {}
for o in in_best:
    by_country[o["country"]] = by_country.get(o["country"], 0) + o["eur"]
top = tools.geo.country(max(by_country, key=by_country.get))
january = sum(o["eur"] for o in in_best if o["day"].startswith("2026-01"))
march = sum(o["eur"] for o in in_best if o["day"].startswith("2026-03"))
print(f"{best}: EUR {by_category[best]:,.2f}; top buyer {top['name']} (EUR {by_country[top['code']]:,.2f}); "
      f"January EUR {january:,.2f} -> March EUR {march:,.2f} ({(march - january) / january:+.1%})")

# %%
final_answer({
    "category": best,
    "revenue_eur": round(by_category[best], 2),
    "top_country": top["name"],
    "top_country_revenue_eur": round(by_country[top["code"]], 2),
    "january_eur": round(january, 2),
    "march_eur": round(march, 2),
})
