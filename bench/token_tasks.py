"""Data-heavy tasks for the token-economy benchmark: host tools, the user's text, the code a model would send.

Each :class:`Task` bundles what both kinds of agent need:

* host tools (plain Python functions made tools with ``kernel_agent.tool``)
  serving the seeded data of token_data.py; every call is logged with
  its arguments and result, so the classic agent can be charged for exactly
  the calls the kernel-agent run made;
* the task text a user would type;
* the replies a scripted model sends (code cells, then ``final_answer``),
  written the way a capable model works: look at a sample first, then
  compute in the kernel and print only what it needs;
* a check of the final answer against the truth computed on the host,
  so a token figure is never reported for a run that got the answer wrong.

The tools return whole result sets (paged where a real API would page, the
way list endpoints and log queries do) and offer no server-side filter for
the question asked: that is the data-heavy case the issue defines. A tool
with the right filter would shrink the classic figure, and the task with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kernel_agent import tool

from token_data import (
    CATALOGUE, CUSTOMERS, DOCUMENT_WORDS, LOG_LINES, ORDERS, TOPICS, customer_rows, document, log_lines, order_rows,
    truth_errors, truth_retention, truth_revenue, truth_top_customers,
)

CUSTOMER_PAGE = 1_000
ORDER_PAGE = 1_000
LOG_PAGE = 2_000


# -- tasks -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedCall:
    """One tool call as the host served it: what a classic agent's context would receive."""

    tool: str  # qualified name, e.g. "crm.customers"
    arguments: dict[str, Any]
    result: Any


@dataclass
class Task:
    """One data-heavy task: its tools, the user's text, the scripted replies and an answer check."""

    key: str
    title: str
    data: str  # what the tools hand over, for the report
    prompt: str
    tools: list[Callable[..., Any]]
    replies: list[str | dict[str, str]]
    check: Callable[[str], bool]
    calls: list[LoggedCall] = field(default_factory=list)


def _page(rows: tuple[Any, ...], page: int, page_size: int, key: str) -> dict[str, Any]:
    pages = -(-len(rows) // page_size)
    start = (page - 1) * page_size
    return {"page": page, "pages": pages, "total": len(rows), key: list(rows[start:start + page_size])}


def _customers_tool(calls: list[LoggedCall]) -> Callable[..., Any]:
    @tool(namespace="crm", read_only=True)
    def customers(page: int = 1, page_size: int = CUSTOMER_PAGE) -> dict[str, Any]:
        """List customer records, one page at a time.

        Args:
            page: page number, from 1.
            page_size: records per page (at most 1000).
        """
        result = _page(customer_rows(), page, min(page_size, CUSTOMER_PAGE), "customers")
        calls.append(LoggedCall("crm.customers", {"page": page, "page_size": page_size}, result))
        return result

    return customers


def top_customers_task() -> Task:
    calls: list[LoggedCall] = []
    replies: list[str | dict[str, str]] = [
        {"text": "Let me look at the shape of the customer data first.",
         "code": 'first = tools.crm.customers(page=1)\n'
                 'print(first["total"], first["pages"], len(first["customers"]))\n'
                 'print(first["customers"][0])'},
        {"text": "Now all pages, filtered and ranked in the kernel.",
         "code": 'rows = list(first["customers"])\n'
                 'for page in range(2, first["pages"] + 1):\n'
                 '    rows += tools.crm.customers(page=page)["customers"]\n'
                 'hits = [c for c in rows if c["country"] == "DE" and c["segment"] == "enterprise"\n'
                 '        and c["open_tickets"] >= 2]\n'
                 'top = sorted(hits, key=lambda c: c["lifetime_value"], reverse=True)[:5]\n'
                 'print(len(rows), "customers,", len(hits), "match")\n'
                 'for c in top:\n'
                 '    print(c["id"], c["name"], c["lifetime_value"], c["open_tickets"])'},
        {"text": "Done.",
         "code": 'final_answer("\\n".join(f"{c[\'id\']} {c[\'name\']}: lifetime value {c[\'lifetime_value\']:,.2f} EUR, '
                 '{c[\'open_tickets\']} open tickets" for c in top))'},
    ]

    def check(answer: str) -> bool:
        return all(c["id"] in answer and f"{c['lifetime_value']:,.2f}" in answer for c in truth_top_customers())

    return Task(
        key="top5", title="find 5 rows among 10,000 records",
        data=f"crm.customers: {CUSTOMERS:,} records in {CUSTOMERS // CUSTOMER_PAGE} pages",
        prompt="Which 5 enterprise customers in Germany with at least 2 open support tickets have the highest "
               "lifetime value? Give their id, name, lifetime value and open tickets.",
        tools=[_customers_tool(calls)], replies=replies, check=check, calls=calls,
    )


def revenue_join_task() -> Task:
    calls: list[LoggedCall] = []

    @tool(namespace="sales", read_only=True)
    def orders(quarter: str, page: int = 1, page_size: int = ORDER_PAGE) -> dict[str, Any]:
        """List the orders of one quarter, one page at a time.

        Args:
            quarter: the quarter, as 'YYYY-Qn'.
            page: page number, from 1.
            page_size: orders per page (at most 1000).
        """
        rows = order_rows() if quarter == "2025-Q3" else ()
        result = _page(rows, page, min(page_size, ORDER_PAGE), "orders")
        calls.append(LoggedCall("sales.orders", {"quarter": quarter, "page": page, "page_size": page_size}, result))
        return result

    replies: list[str | dict[str, str]] = [
        {"text": "First a sample of both sources, to see the join key.",
         "code": 'o = tools.sales.orders(quarter="2025-Q3", page=1)\n'
                 'c = tools.crm.customers(page=1)\n'
                 'print(o["total"], o["pages"], o["orders"][0])\n'
                 'print(c["total"], c["pages"], c["customers"][0])'},
        {"text": "Fetch everything, join on customer id, aggregate paid revenue.",
         "code": 'from collections import Counter, defaultdict\n'
                 'all_orders = list(o["orders"])\n'
                 'for p in range(2, o["pages"] + 1):\n'
                 '    all_orders += tools.sales.orders(quarter="2025-Q3", page=p)["orders"]\n'
                 'all_customers = list(c["customers"])\n'
                 'for p in range(2, c["pages"] + 1):\n'
                 '    all_customers += tools.crm.customers(page=p)["customers"]\n'
                 'country = {x["id"]: x["country"] for x in all_customers}\n'
                 'revenue, count, per_customer = defaultdict(float), Counter(), defaultdict(float)\n'
                 'for x in all_orders:\n'
                 '    if x["status"] == "paid":\n'
                 '        revenue[country[x["customer_id"]]] += x["amount"]\n'
                 '        count[country[x["customer_id"]]] += 1\n'
                 '        per_customer[x["customer_id"]] += x["amount"]\n'
                 'top = sorted(revenue, key=revenue.get, reverse=True)[:5]\n'
                 'best = max(per_customer, key=per_customer.get)\n'
                 'print(len(all_orders), "orders,", len(all_customers), "customers,", sum(count.values()), "paid")\n'
                 'for k in top:\n'
                 '    print(k, round(revenue[k], 2), count[k])\n'
                 'print("best customer", best, round(per_customer[best], 2))'},
        {"text": "Done.",
         "code": 'lines = [f"{k}: {revenue[k]:,.2f} EUR from {count[k]} paid orders" for k in top]\n'
                 'lines.append(f"Top customer: {best} with {per_customer[best]:,.2f} EUR")\n'
                 'final_answer("\\n".join(lines))'},
    ]

    def check(answer: str) -> bool:
        top, (best, amount) = truth_revenue()
        return all(f"{k}: {v:,.2f} EUR from {n} " in answer for k, v, n in top) and f"{best} with {amount:,.2f}" in answer

    return Task(
        key="join", title="join two large tool results",
        data=f"sales.orders: {ORDERS:,} orders in {ORDERS // ORDER_PAGE} pages; crm.customers: {CUSTOMERS:,} "
             f"records in {CUSTOMERS // CUSTOMER_PAGE} pages",
        prompt="For 2025-Q3, which 5 customer countries brought the most revenue from paid orders? Give the revenue "
               "and the number of paid orders for each, and the single customer with the highest paid revenue.",
        tools=[orders, _customers_tool(calls)], replies=replies, check=check, calls=calls,
    )



def document_task() -> Task:
    calls: list[LoggedCall] = []

    @tool(namespace="docs", read_only=True)
    def find(query: str) -> list[dict[str, Any]]:
        """Find documents whose title matches the query (id, title, words, updated)."""
        words = query.lower().split()
        result = [{**d, "words": len(document()["text"].split())} if d["id"] == "DOC-0042" else d
                  for d in CATALOGUE if any(w in d["title"].lower() for w in words)]
        calls.append(LoggedCall("docs.find", {"query": query}, result))
        return result

    @tool(namespace="docs", read_only=True)
    def get(doc_id: str) -> dict[str, Any]:
        """The full text of a document (markdown), with its id and title."""
        result = document() if doc_id == "DOC-0042" else {"id": doc_id, "title": "", "text": ""}
        calls.append(LoggedCall("docs.get", {"doc_id": doc_id}, result))
        return result

    replies: list[str | dict[str, str]] = [
        {"text": "Find the agreement, then look at its structure.",
         "code": 'found = tools.docs.find("master services agreement")\n'
                 'for d in found:\n'
                 '    print(d)\n'
                 'doc = tools.docs.get(doc_id=max(found, key=lambda d: d["updated"])["id"])\n'
                 'text = doc["text"]\n'
                 'print(doc["title"], len(text.split()), "words")\n'
                 'print(text[:300])'},
        {"text": "Split into sections and collect the ones that mention the term, with the sentences.",
         "code": 'import re\n'
                 'sections = text.split("\\n## ")[1:]\n'
                 'hits = []\n'
                 'for s in sections:\n'
                 '    n = s.lower().count("data retention")\n'
                 '    if n:\n'
                 '        heading = s.split("\\n", 1)[0]\n'
                 '        said = sorted({x.strip() for x in re.split(r"(?<=[.])\\s+", s) if "data retention" in x.lower()})\n'
                 '        hits.append((heading, n, said))\n'
                 'print(len(sections), "sections;", len(hits), "mention data retention;", sum(h[1] for h in hits), "mentions")\n'
                 'for heading, n, said in hits:\n'
                 '    print(f"{heading} ({n}):", " | ".join(said))'},
        {"text": "Done.",
         "code": 'final_answer("\\n".join(f"{h} ({n} mentions): " + " ".join(s) for h, n, s in hits)\n'
                 '             + f"\\nTotal: {sum(h[1] for h in hits)} mentions in {len(hits)} of {len(sections)} sections")'},
    ]

    def check(answer: str) -> bool:
        truth = truth_retention()
        total = sum(n for _, n in truth)
        return all(f"{h} ({n} mentions)" in answer for h, n in truth) and f"Total: {total} mentions" in answer

    return Task(
        key="document", title="summarise a long document",
        data=f"docs.get: one {DOCUMENT_WORDS:,}-word agreement in {len(TOPICS)} sections; docs.find: 4 titles",
        prompt="In the latest Master Services Agreement, what does it say about data retention? List the sections "
               "that mention data retention with the number of mentions and what they say, and the total.",
        tools=[find, get], replies=replies, check=check, calls=calls,
    )


def log_task() -> Task:
    calls: list[LoggedCall] = []

    @tool(namespace="logs", read_only=True)
    def query(service: str, start: str, end: str, page: int = 1, page_size: int = LOG_PAGE) -> dict[str, Any]:
        """Access-log lines of a service between two ISO times, one page at a time.

        Args:
            service: the service name.
            start: ISO 8601 start time (inclusive).
            end: ISO 8601 end time (exclusive).
            page: page number, from 1.
            page_size: lines per page (at most 2000).
        """
        rows = log_lines() if service == "checkout" else ()
        result = _page(rows, page, min(page_size, LOG_PAGE), "lines")
        calls.append(LoggedCall("logs.query", {"service": service, "start": start, "end": end, "page": page,
                                               "page_size": page_size}, result))
        return result

    window = 'service="checkout", start="2025-11-03T14:00:00Z", end="2025-11-03T15:00:00Z"'
    replies: list[str | dict[str, str]] = [
        {"text": "A look at the log format first.",
         "code": f'first = tools.logs.query({window})\n'
                 'print(first["total"], first["pages"])\n'
                 'print("\\n".join(first["lines"][:3]))'},
        {"text": "Parse every page; count 5xx by endpoint with their latencies.",
         "code": 'from collections import Counter, defaultdict\n'
                 'lines = list(first["lines"])\n'
                 'for p in range(2, first["pages"] + 1):\n'
                 f'    lines += tools.logs.query({window}, page=p)["lines"]\n'
                 'errors, latency = Counter(), defaultdict(list)\n'
                 'for line in lines:\n'
                 '    ts, host, method, path, status, ms, *_ = line.split()\n'
                 '    if status.startswith("5"):\n'
                 '        errors[path] += 1\n'
                 '        latency[path].append(int(ms[:-2]))\n'
                 'def p95(xs):\n'
                 '    xs = sorted(xs)\n'
                 '    return xs[min(len(xs) - 1, int(0.95 * len(xs)))]\n'
                 'print(len(lines), "lines,", sum(errors.values()), "5xx")\n'
                 'for path, n in errors.most_common(3):\n'
                 '    print(path, n, "p95", p95(latency[path]), "ms")'},
        {"text": "Done.",
         "code": 'final_answer("\\n".join(f"{path}: {n} 5xx responses, p95 latency {p95(latency[path])} ms"\n'
                 '                        for path, n in errors.most_common(3)))'},
    ]

    def check(answer: str) -> bool:
        return all(f"{path}: {n} 5xx" in answer for path, n in truth_errors())

    return Task(
        key="logs", title="analyse an hour of access logs",
        data=f"logs.query: {LOG_LINES:,} lines in {LOG_LINES // LOG_PAGE} pages",
        prompt="Between 14:00 and 15:00 UTC on 2025-11-03, which 3 endpoints of the checkout service returned the "
               "most 5xx errors? Give the count and the p95 latency of those failing requests for each.",
        tools=[query], replies=replies, check=check, calls=calls,
    )


def all_tasks() -> list[Task]:
    """Every task, with fresh call logs."""
    return [top_customers_task(), revenue_join_task(), document_task(), log_task()]
