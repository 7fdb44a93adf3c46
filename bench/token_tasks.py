"""Data-heavy tasks for the token-economy benchmark: host tools, seeded data, and the code a model would send.

Each :class:`Task` bundles what both kinds of agent need:

* host tools (plain Python functions made tools with ``kernel_agent.tool``)
  serving deterministic data from a seeded RNG; every call is logged with
  its arguments and result, so the classic agent can be charged for exactly
  the calls the kernel-agent run made;
* the task text a user would type;
* the replies a scripted model sends (code cells, then ``final_answer``),
  written the way a capable model works: look at a sample first, then
  compute in the kernel and print only what it needs;
* a check of the final answer against the truth computed here on the host,
  so a token figure is never reported for a run that got the answer wrong.

The tools return whole result sets (paged where a real API would page, the
way list endpoints and log queries do) and offer no server-side filter for
the question asked: that is the data-heavy case the issue defines. A tool
with the right filter would shrink the classic figure, and the task with it.
"""

from __future__ import annotations

import random
import string
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from kernel_agent import tool

SEED = 20251103
COUNTRIES = ("DE", "FR", "US", "GB", "NL", "ES", "IT", "SE", "PL", "JP", "BR", "CA")
SEGMENTS = ("enterprise", "mid-market", "smb")
MANAGERS = ("A. Novak", "B. Okafor", "C. Lindqvist", "D. Moreau", "E. Tanaka", "F. Silva", "G. Rossi", "H. Berg")
SURNAMES = ("Weber", "Schmidt", "Martin", "Smith", "Jansen", "Garcia", "Rossi", "Lind", "Kowalski", "Sato",
            "Souza", "Tremblay", "Fischer", "Dubois", "Brown", "de Vries", "Lopez", "Bianchi", "Berg", "Nowak")
NOUNS = ("Logistics", "Foods", "Systems", "Energy", "Retail", "Health", "Media", "Labs", "Capital", "Motors",
         "Textiles", "Analytics", "Pharma", "Robotics", "Travel", "Insurance")
SUFFIXES = ("GmbH", "SA", "Inc.", "Ltd", "B.V.", "S.L.", "S.p.A.", "AB", "sp. z o.o.", "K.K.", "Ltda", "Corp.")

CUSTOMERS = 10_000
CUSTOMER_PAGE = 1_000
ORDERS = 8_000
ORDER_PAGE = 1_000
LOG_LINES = 12_000
LOG_PAGE = 2_000
DOCUMENT_WORDS = 50_000


# -- data --------------------------------------------------------------------------------------


@cache
def customer_rows() -> tuple[dict[str, Any], ...]:
    """10,000 CRM records, the same on every run."""
    rng = random.Random(SEED)
    rows = []
    for i in range(CUSTOMERS):
        country = rng.choice(COUNTRIES)
        segment = rng.choices(SEGMENTS, weights=(1, 3, 6))[0]
        scale = {"enterprise": 250_000, "mid-market": 60_000, "smb": 12_000}[segment]
        rows.append({
            "id": f"C{i + 1:05d}",
            "name": f"{rng.choice(SURNAMES)} {rng.choice(NOUNS)} {SUFFIXES[COUNTRIES.index(country)]}",
            "country": country,
            "segment": segment,
            "signup_date": f"{rng.randint(2015, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "lifetime_value": round(rng.lognormvariate(0, 0.6) * scale, 2),
            "open_tickets": min(9, int(rng.expovariate(0.8))),
            "account_manager": rng.choice(MANAGERS),
        })
    return tuple(rows)


@cache
def order_rows() -> tuple[dict[str, Any], ...]:
    """8,000 orders of 2025-Q3 placed by those customers."""
    rng = random.Random(SEED + 1)
    ids = [c["id"] for c in customer_rows()]
    rows = []
    for i in range(ORDERS):
        month = rng.choice((7, 8, 9))
        rows.append({
            "order_id": f"O-2025-{i + 1:06d}",
            "customer_id": rng.choice(ids),
            "date": f"2025-{month:02d}-{rng.randint(1, 30 if month == 9 else 31):02d}",
            "amount": round(rng.lognormvariate(6, 1.0), 2),
            "currency": "EUR",
            "status": rng.choices(("paid", "refunded", "pending", "cancelled"), weights=(80, 6, 9, 5))[0],
            "channel": rng.choice(("web", "sales", "partner", "marketplace")),
        })
    return tuple(rows)


ENDPOINTS = ("/api/v2/cart", "/api/v2/cart/items", "/api/v2/checkout", "/api/v2/payment/authorize",
             "/api/v2/payment/capture", "/api/v2/shipping/quote", "/api/v2/promo/validate", "/api/v2/address",
             "/api/v2/tax/estimate", "/api/v2/inventory/reserve", "/healthz", "/api/v2/session")


@cache
def log_lines() -> tuple[str, ...]:
    """12,000 access-log lines of the checkout service for one hour."""
    rng = random.Random(SEED + 2)
    flaky = {"/api/v2/payment/authorize": 0.06, "/api/v2/inventory/reserve": 0.035, "/api/v2/tax/estimate": 0.02}
    lines = []
    for i in range(LOG_LINES):
        second = i * 3600 // LOG_LINES
        endpoint = rng.choice(ENDPOINTS)
        method = "GET" if endpoint in ("/api/v2/cart", "/healthz", "/api/v2/shipping/quote") else "POST"
        failed = rng.random() < flaky.get(endpoint, 0.004)
        status = rng.choice((500, 502, 503, 504)) if failed else rng.choices((200, 201, 204, 400, 404), (85, 5, 4, 4, 2))[0]
        latency = int(rng.lognormvariate(4.5, 0.5) * (8 if failed else 1))
        request = "".join(rng.choices(string.hexdigits.lower(), k=12))
        lines.append(f"2025-11-03T14:{second // 60:02d}:{second % 60:02d}.{rng.randint(0, 999):03d}Z "
                     f"checkout-{rng.choice(('7f9c', 'a21e', '03bd'))} {method} {endpoint} {status} {latency}ms "
                     f"req={request} user=U{rng.randint(1, 99_999):05d}")
    return tuple(lines)


TERM = "data retention"
# Clause material for the agreement: sentences built from templates read like contract English
# (defined terms, clause references, parentheses, numbers), so the text tokenizes about as densely as
# real legal prose does: 1.29 o200k_base tokens a word, against 1.32-1.43 for the GPL-3, Apache-2.0
# and MPL-2.0 texts. Random words from a small vocabulary came to 1.09, unrealistically cheap.
_PARTIES = ("the Supplier", "the Customer", "either Party", "each Party", "the Supplier's Personnel",
            "any Subcontractor", "the receiving Party", "the disclosing Party", "the Customer's Affiliates")
_VERBS = ("maintain", "provide", "notify", "procure", "ensure", "implement", "document", "remediate", "reimburse",
          "suspend", "disclose", "deliver", "verify", "escalate", "certify", "rectify", "mitigate", "invoice")
_OBJECTS = ("the Services", "all Deliverables", "any Customer Data", "the Service Credits",
            "a written remediation plan", "the Security Measures described in Schedule 4",
            "the Fees set out in the applicable Order Form", "all Confidential Information", "the Documentation",
            "an independent third-party audit report (SOC 2 Type II or ISO/IEC 27001)", "the Acceptance Criteria",
            "the Business Continuity Plan", "any Change Request", "the Key Performance Indicators",
            "a root-cause analysis of each Severity 1 Incident", "the Transition Assistance", "the Exit Plan",
            "any Third-Party Software", "the Supplier Materials", "the Governance Reports")
_QUALIFIERS = ("in accordance with Good Industry Practice", "within {n} Business Days of the Effective Date",
               "at its own cost and expense", "to the extent permitted by Applicable Law", "without undue delay",
               "as reasonably requested by the Customer", "no later than {n} days after receipt of a valid invoice",
               "save as expressly provided in clause {s}", "unless otherwise agreed in writing by the Parties",
               "on a non-exclusive, non-transferable basis", "during the Term and for {n} months thereafter",
               "in each case subject to clause {s}")
_LOSSES = ("indirect or consequential loss", "loss of profits, revenue or goodwill", "loss or corruption of data",
           "wasted expenditure", "regulatory fines or penalties")
_TERMS = ("Business Day", "Contract Year", "Service Level", "Good Industry Practice", "Personnel", "Incident",
          "Authorised User", "Change Control Procedure", "Materials", "Commencement Date")
_TEMPLATES = (
    "{P} shall {v} {o} {q}.",
    "Subject to clause {s}, {p} may {v} {o} upon {n} ({w}) days' prior written notice to {p2}.",
    "Notwithstanding the foregoing, {p} shall not be liable for any {l} arising out of or in connection with {o}, "
    "except where such {l} results from {p2}'s gross negligence or wilful misconduct.",
    'For the purposes of this clause {s}, "{t}" means {o} {q}, including (without limitation) {o2} and {o3}.',
    "{P} acknowledges that {o} may change from time to time; accordingly, {p2} shall {v} {o2} {q} and shall "
    "promptly inform {p} of any material change.",
    "The aggregate liability of {p} under or in connection with this Agreement shall not exceed EUR {m} in any "
    "Contract Year (the \"Liability Cap\").",
    "If {p} fails to {v} {o} {q}, {p2} may, without prejudice to its other rights and remedies, {v2} {o2}.",
    "{P} shall keep complete and accurate records of {o} and shall, on request, make them available to {p2} "
    "(or its auditors) {q}.",
)
_NUMBER_WORDS = {5: "five", 10: "ten", 14: "fourteen", 30: "thirty", 45: "forty-five", 60: "sixty", 90: "ninety"}


def _clause(rng: random.Random) -> str:
    """One sentence of contract English."""
    days = rng.choice(tuple(_NUMBER_WORDS))
    parties = rng.sample(_PARTIES, 2)
    objects = rng.sample(_OBJECTS, 3)
    fields: dict[str, Any] = {
        "p": parties[0], "p2": parties[1], "v": rng.choice(_VERBS), "v2": rng.choice(_VERBS),
        "o": objects[0], "o2": objects[1], "o3": objects[2], "l": rng.choice(_LOSSES), "t": rng.choice(_TERMS),
        "n": days, "w": _NUMBER_WORDS[days], "m": f"{rng.randint(1, 40) * 250_000:,}",
        "s": f"{rng.randint(1, 40)}.{rng.randint(1, 9)}{rng.choice(('', '(a)', '(b)', '(c)'))}",
    }
    fields["q"] = rng.choice(_QUALIFIERS).format(**fields)
    fields["P"] = fields["p"][0].upper() + fields["p"][1:]
    return rng.choice(_TEMPLATES).format(**fields)


_TOPICS = ("Definitions", "Scope of Services", "Service Levels", "Fees and Payment", "Invoicing", "Taxes",
           "Confidentiality", "Data Protection", "Security Measures", "Audit Rights", "Subcontractors",
           "Intellectual Property", "Warranties", "Indemnification", "Limitation of Liability", "Insurance",
           "Term and Renewal", "Termination", "Effects of Termination", "Business Continuity", "Backup and Recovery",
           "Records Management", "Incident Response", "Change Control", "Governance", "Dispute Resolution",
           "Force Majeure", "Notices", "Assignment", "Export Control", "Anti-Bribery", "Publicity",
           "Non-Solicitation", "Personnel", "Acceptance Testing", "Transition Services", "Exit Plan",
           "Data Transfers", "Data Subject Requests", "Deletion and Return of Data")
_RETENTION_SENTENCES = (
    "The supplier shall apply the data retention schedule in Annex C to all customer records.",
    "Backups are subject to the same data retention limits as production systems.",
    "Upon termination the data retention period ends after ninety days, after which data is deleted.",
    "Any change to the data retention rules requires written notice of thirty days.",
    "Subcontractors shall comply with data retention obligations no less protective than this agreement.",
)


@cache
def document() -> dict[str, Any]:
    """A 50,000-word services agreement in numbered sections; a few mention the search term."""
    rng = random.Random(SEED + 3)
    retention_topics = {"Data Protection", "Backup and Recovery", "Records Management", "Effects of Termination",
                        "Subcontractors", "Deletion and Return of Data", "Exit Plan"}
    per_section = DOCUMENT_WORDS // len(_TOPICS)
    sections = []
    for number, topic in enumerate(_TOPICS, start=1):
        sentences: list[str] = []
        words = 0
        while words < per_section:
            sentences.append(_clause(rng))
            words += len(sentences[-1].split())
            if topic in retention_topics and rng.random() < 0.1:
                sentences.append(rng.choice(_RETENTION_SENTENCES))
        paragraphs = [" ".join(sentences[i:i + 6]) for i in range(0, len(sentences), 6)]
        sections.append(f"## {number}. {topic}\n\n" + "\n\n".join(paragraphs))
    text = "# Master Services Agreement\n\n" + "\n\n".join(sections)
    return {"id": "DOC-0042", "title": "Master Services Agreement (Acme Cloud, 2025 renewal)", "text": text}


CATALOGUE: tuple[dict[str, Any], ...] = (
    {"id": "DOC-0017", "title": "Data Processing Addendum (2023)", "words": 6_120, "updated": "2023-05-02"},
    {"id": "DOC-0042", "title": "Master Services Agreement (Acme Cloud, 2025 renewal)", "updated": "2025-10-28"},
    {"id": "DOC-0051", "title": "Master Services Agreement (Acme Cloud, 2022)", "words": 41_800,
     "updated": "2022-01-14"},
    {"id": "DOC-0063", "title": "Statement of Work 7: Migration", "words": 3_950, "updated": "2025-02-11"},
)


# -- the truth, computed on the host ---------------------------------------------------------------


def truth_top_customers() -> list[dict[str, Any]]:
    hits = [c for c in customer_rows() if c["country"] == "DE" and c["segment"] == "enterprise" and c["open_tickets"] >= 2]
    return sorted(hits, key=lambda c: c["lifetime_value"], reverse=True)[:5]


def truth_revenue() -> tuple[list[tuple[str, float, int]], tuple[str, float]]:
    country = {c["id"]: c["country"] for c in customer_rows()}
    revenue: defaultdict[str, float] = defaultdict(float)
    count: Counter[str] = Counter()
    by_customer: defaultdict[str, float] = defaultdict(float)
    for o in order_rows():
        if o["status"] == "paid":
            revenue[country[o["customer_id"]]] += o["amount"]
            count[country[o["customer_id"]]] += 1
            by_customer[o["customer_id"]] += o["amount"]
    top = sorted(revenue, key=revenue.__getitem__, reverse=True)[:5]
    best = max(by_customer, key=by_customer.__getitem__)
    return [(c, revenue[c], count[c]) for c in top], (best, by_customer[best])


def truth_retention() -> list[tuple[str, int]]:
    found = []
    for section in document()["text"].split("\n## ")[1:]:
        mentions = section.lower().count(TERM)
        if mentions:
            found.append((section.split("\n", 1)[0], mentions))
    return found


def truth_errors() -> list[tuple[str, int]]:
    errors: Counter[str] = Counter()
    for line in log_lines():
        parts = line.split()
        if parts[4].startswith("5"):
            errors[parts[3]] += 1
    return errors.most_common(3)


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
        data=f"docs.get: one {DOCUMENT_WORDS:,}-word agreement in {len(_TOPICS)} sections; docs.find: 4 titles",
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
