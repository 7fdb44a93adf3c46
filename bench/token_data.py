"""Seeded data for the token-economy benchmark, and the true answers computed from it on the host.

Everything is generated from a fixed seed, so every run (and every machine)
serves the same records, log lines and document, and the token counts of
bench/bench_tokens.py are reproducible. The ``truth_*`` functions compute
each task's answer directly in this process, to check what the agent
answered.
"""

from __future__ import annotations

import random
import string
from collections import Counter, defaultdict
from functools import cache
from typing import Any

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
ORDERS = 8_000
LOG_LINES = 12_000
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


TOPICS = ("Definitions", "Scope of Services", "Service Levels", "Fees and Payment", "Invoicing", "Taxes",
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
    per_section = DOCUMENT_WORDS // len(TOPICS)
    sections = []
    for number, topic in enumerate(TOPICS, start=1):
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
