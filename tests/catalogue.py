"""A generated, deterministic OpenAPI document of any size, shaped like a real SaaS API, and its tools.

Used by the catalogue tests (tests/tools/test_catalogue.py) and the catalogue
section of bench/bench_tokens.py. 50 tags (resources) with descriptions;
each operation has an operationId, a summary, a description of a few
sentences, 2-6 parameters of various types (path, query, a JSON request body
with typed properties) as real APIs have them. ``api_document(n)`` has ``n``
operations spread over a number of tags that grows with ``n`` (4 tags at 10
operations, 50 from 2,500 on).
"""

from __future__ import annotations

import math
import random
from typing import Any

from kernel_agent.tools.tool import Tool

# (tag, singular noun, description): the resources of a business platform.
RESOURCES: list[tuple[str, str, str]] = [
    ("customers", "customer", "People and companies you bill: contact details, tax ids, default payment method."),
    ("invoices", "invoice", "Statements of amounts owed by a customer, issued once or by a subscription."),
    ("subscriptions", "subscription", "Recurring billing of a customer for one or more prices."),
    ("payments", "payment", "Money moved from a customer to your account, by card or bank transfer."),
    ("refunds", "refund", "Money given back to a customer for a payment, in full or in part."),
    ("products", "product", "The goods and services you sell, each with one or more prices."),
    ("prices", "price", "How much and how often a product is charged, in one currency."),
    ("coupons", "coupon", "Discounts that can be applied to invoices and subscriptions."),
    ("orders", "order", "Purchases of physical goods, from checkout to fulfilment."),
    ("shipments", "shipment", "Parcels sent to fulfil an order, with carrier and tracking number."),
    ("warehouses", "warehouse", "Places that hold stock, with their address and opening hours."),
    ("inventory_items", "inventory item", "Stock levels of a product variant in a warehouse."),
    ("suppliers", "supplier", "Companies you buy stock from, with terms and contacts."),
    ("purchase_orders", "purchase order", "Orders of stock placed with a supplier."),
    ("employees", "employee", "People on your payroll, with role, team and manager."),
    ("teams", "team", "Groups of employees with a lead and a budget."),
    ("payroll_runs", "payroll run", "One pay period's salaries, taxes and deductions."),
    ("timesheets", "timesheet", "Hours an employee worked, by day and project."),
    ("projects", "project", "Work tracked against a budget, with tasks and members."),
    ("tasks", "task", "Units of work in a project, with assignee, status and due date."),
    ("tickets", "ticket", "Support requests from customers, with priority and conversation."),
    ("conversations", "conversation", "Messages exchanged with a customer over email or chat."),
    ("knowledge_articles", "knowledge article", "Help-centre pages customers can read."),
    ("campaigns", "campaign", "Marketing emails sent to a segment of contacts."),
    ("segments", "segment", "Saved filters over contacts, used to target campaigns."),
    ("contacts", "contact", "People in your address book, leads and customers alike."),
    ("deals", "deal", "Sales opportunities moving through a pipeline."),
    ("pipelines", "pipeline", "The stages a deal goes through, from lead to won or lost."),
    ("quotes", "quote", "Priced offers sent to a prospect before a deal is won."),
    ("contracts", "contract", "Signed agreements with a customer or supplier."),
    ("documents", "document", "Files stored for your organisation, with versions and sharing."),
    ("folders", "folder", "Groups of documents with their own permissions."),
    ("users", "user", "Accounts that can sign in to your organisation."),
    ("roles", "role", "Sets of permissions given to users."),
    ("api_keys", "API key", "Secret keys that let programs call the API on behalf of a user."),
    ("webhooks", "webhook", "Endpoints that receive events from the platform."),
    ("events", "event", "Things that happened in your account, for auditing and webhooks."),
    ("audit_logs", "audit log entry", "Who did what and when, kept for compliance."),
    ("reports", "report", "Saved analyses over your data, run on demand or on a schedule."),
    ("dashboards", "dashboard", "Pages of charts built from reports."),
    ("tax_rates", "tax rate", "Sales tax, VAT and GST rates applied to invoices."),
    ("bank_accounts", "bank account", "Accounts you receive payouts to or pay suppliers from."),
    ("payouts", "payout", "Transfers of your balance to a bank account."),
    ("disputes", "dispute", "Chargebacks a customer's bank opened against a payment."),
    ("expenses", "expense", "Money spent by employees, with receipts to approve."),
    ("budgets", "budget", "Spending limits per team, project or category."),
    ("locations", "location", "Offices and stores of your organisation."),
    ("devices", "device", "Laptops, phones and terminals issued to employees."),
    ("calendars", "calendar", "Schedules of meetings and bookings."),
    ("bookings", "booking", "Appointments customers made with your staff."),
]

# (verb of the operationId, summary template, HTTP method, on an item?, has a body?)
ACTIONS: list[tuple[str, str, str, bool, bool]] = [
    ("list", "List {plural}", "get", False, False),
    ("get", "Retrieve {a} {noun}", "get", True, False),
    ("create", "Create {a} {noun}", "post", False, True),
    ("update", "Update {a} {noun}", "patch", True, True),
    ("delete", "Delete {a} {noun}", "delete", True, False),
    ("search", "Search {plural}", "get", False, False),
    ("archive", "Archive {a} {noun}", "post", True, False),
    ("restore", "Restore an archived {noun}", "post", True, False),
    ("export", "Export {plural} as CSV", "post", False, True),
    ("import", "Import {plural} from CSV", "post", False, True),
    ("count", "Count {plural}", "get", False, False),
    ("duplicate", "Duplicate {a} {noun}", "post", True, False),
]
# Sub-resources: (name, singular), listed, fetched, added and removed under an item.
CHILDREN: list[tuple[str, str]] = [
    ("notes", "note"), ("attachments", "attachment"), ("comments", "comment"), ("tags", "tag"),
    ("history", "history entry"), ("permissions", "permission"), ("custom_fields", "custom field"),
    ("reminders", "reminder"), ("links", "link"), ("watchers", "watcher"), ("metadata", "metadata entry"),
    ("activities", "activity"),
]
CHILD_ACTIONS: list[tuple[str, str, str, bool]] = [
    ("list", "List the {child_plural} of {a} {noun}", "get", False),
    ("add", "Add {ca} {child} to {a} {noun}", "post", True),
    ("get", "Retrieve one {child} of {a} {noun}", "get", False),
    ("remove", "Remove {ca} {child} from {a} {noun}", "delete", False),
]
QUERY_PARAMETERS: list[tuple[str, dict[str, Any], str]] = [
    ("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}, "How many to return, 1 to 100."),
    ("starting_after", {"type": "string"}, "A cursor: the id of the last object of the previous page."),
    ("created_gte", {"type": "string", "format": "date-time"}, "Only objects created at or after this time."),
    ("status", {"type": "string", "enum": ["active", "archived", "draft"]}, "Only objects with this status."),
    ("expand", {"type": "array", "items": {"type": "string"}}, "Related objects to include in full."),
    ("include_deleted", {"type": "boolean", "default": False}, "Also return deleted objects."),
    ("sort", {"type": "string", "enum": ["created", "-created", "updated", "-updated"]}, "Sort order."),
]
BODY_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("name", {"type": "string", "maxLength": 200}, "Display name."),
    ("description", {"type": "string"}, "Free text shown to your team."),
    ("email", {"type": "string", "format": "email"}, "Contact email address."),
    ("amount", {"type": "integer", "minimum": 0}, "Amount in the smallest currency unit (cents)."),
    ("currency", {"type": "string", "pattern": "^[a-z]{3}$"}, "Three-letter ISO currency code, lowercase."),
    ("metadata", {"type": "object", "additionalProperties": {"type": "string"}}, "Your own key-value pairs."),
    ("due_date", {"type": "string", "format": "date"}, "When it is due."),
    ("priority", {"type": "string", "enum": ["low", "normal", "high", "urgent"]}, "How urgent it is."),
    ("owner_id", {"type": "string"}, "The user responsible for it."),
    ("address", {"type": "object", "properties": {
        "line1": {"type": "string"}, "city": {"type": "string"}, "postal_code": {"type": "string"},
        "country": {"type": "string", "description": "ISO 3166-1 alpha-2 code."}}, "required": ["line1", "country"]},
     "Postal address."),
]


def _camel(*words: str) -> str:
    parts = [w for word in words for w in word.replace("-", " ").replace("_", " ").split()]
    return parts[0].lower() + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _article(noun: str) -> str:
    return "an" if noun[0].lower() in "aeio" or noun.startswith("API") else "a"


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _operations(tag: str, noun: str) -> list[dict[str, Any]]:
    """Every operation on one resource, main actions first (so a small document has the usual ones)."""
    plural, key = _plural(noun), noun.replace(" ", "_") + "_id"
    ops = []
    for verb, summary, method, on_item, body in ACTIONS:
        many = verb in ("list", "search", "export", "import", "count")
        ops.append({"verb": verb, "operationId": _camel(verb, plural if many else noun),
                    "summary": summary.format(noun=noun, plural=plural, a=_article(noun)), "method": method,
                    "path": f"/{tag}" + (f"/{{{key}}}" if on_item else "") + ("" if verb in ("list", "get", "create",
                                                                                              "update", "delete")
                                                                               else f"/{verb}"),
                    "item_key": key if on_item else None, "body": body})
    for child, child_noun in CHILDREN:
        for verb, summary, method, body in CHILD_ACTIONS:
            child_name = child_noun if verb in ("add", "get", "remove") else child
            child_plural = _plural(child_noun) if child != "history" else "history"
            ops.append({"verb": verb, "operationId": _camel(verb, noun, child_name),
                        "summary": summary.format(noun=noun, child=child_noun, a=_article(noun),
                                                  ca=_article(child_noun), child_plural=child_plural),
                        "method": method, "path": f"/{tag}/{{{key}}}/{child}"
                        + ("/{child_id}" if verb in ("get", "remove") else ""),
                        "item_key": key, "child_key": "child_id" if verb in ("get", "remove") else None, "child": child,
                        "body": body})
    return ops


def _parameters(
    op: dict[str, Any], noun: str, rng: random.Random,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    params: list[dict[str, Any]] = []
    if op["item_key"]:
        params.append({"name": op["item_key"], "in": "path", "required": True, "schema": {"type": "string"},
                       "description": f"The id of the {noun}."})
    if op.get("child_key"):
        params.append({"name": "child_id", "in": "path", "required": True, "schema": {"type": "string"},
                       "description": "The id of the related object."})
    wanted = rng.randint(2, 6) - len(params)
    body = None
    if op["body"]:
        fields = rng.sample(BODY_FIELDS, k=max(1, wanted))
        required = [fields[0][0]] if op["verb"] in ("create", "add") else []
        body = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": required,
            "properties": {name: {**schema, "description": text} for name, schema, text in fields}}}}}
    elif wanted > 0 and op["method"] == "get":
        for name, schema, text in rng.sample(QUERY_PARAMETERS, k=wanted):
            params.append({"name": name, "in": "query", "required": False, "schema": schema, "description": text})
    return params, body


def _description(op: dict[str, Any], noun: str, tag_description: str, rng: random.Random) -> str:
    plural = _plural(noun)
    sentences = {
        "list": f"Returns a page of {plural}, newest first. Use the cursor to page through the rest.",
        "get": f"Returns the {noun} with the given id, or a 404 error if there is none.",
        "create": f"Creates a new {noun} and returns it. Fields you leave out take their defaults.",
        "update": f"Updates the fields you pass and leaves the others unchanged. Returns the updated {noun}.",
        "delete": f"Permanently deletes the {noun}. This cannot be undone.",
        "search": f"Finds {plural} matching a query string over their names and metadata.",
        "count": f"Returns how many {plural} match the filters, without listing them.",
    }
    first = sentences.get(op["verb"], op["summary"] + ".") if "child" not in op else (
        f"{op['summary']}. The {op['child'].replace('_', ' ')} of a {noun} are kept with it and listed newest first.")
    extra = rng.choice(["Requires the read scope.", "Requires the write scope.", "Rate limited to 25 requests "
                        "per second.", "Available on all plans.", "Idempotent when you send an Idempotency-Key."])
    return f"{first} {tag_description} {extra}"


def api_document(operations: int, *, seed: int = 14) -> dict[str, Any]:
    """An OpenAPI 3.1 document with exactly ``operations`` operations, the same for the same arguments."""
    tag_count = min(len(RESOURCES), max(2, math.ceil(math.sqrt(operations))), operations)
    resources = RESOURCES[:tag_count]
    per_tag = [operations // tag_count + (1 if i < operations % tag_count else 0) for i in range(tag_count)]
    rng = random.Random(seed)
    paths: dict[str, dict[str, Any]] = {}
    for (tag, noun, text), count in zip(resources, per_tag, strict=True):
        available = _operations(tag, noun)
        if count > len(available):
            raise ValueError(f"at most {len(available) * len(RESOURCES)} operations")
        for op in available[:count]:
            params, body = _parameters(op, noun, rng)
            operation: dict[str, Any] = {
                "operationId": op["operationId"], "summary": op["summary"],
                "description": _description(op, noun, text, rng), "tags": [tag], "parameters": params,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"id": {"type": "string"}, "object": {"type": "string"}}}}}}},
            }
            if body is not None:
                operation["requestBody"] = body
            paths.setdefault(op["path"], {})[op["method"]] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Acme Business Platform", "version": "2026-11-01"},
        "servers": [{"url": "https://api.acme.example/v1"}],
        "tags": [{"name": tag, "description": text} for tag, _, text in resources],
        "paths": paths,
    }


def _handler(**arguments: Any) -> dict[str, Any]:
    return {"id": "obj_1", "object": "echo", "arguments": arguments}


def document_tools(document: dict[str, Any]) -> tuple[list[Tool], dict[str, str]]:
    """The document's operations as Tools (one per operation, namespace = first tag) and the tag descriptions.

    A plain conversion for tests and benchmarks: the input schema holds the path and query parameters and the
    request body's properties, as an OpenAPI tool source would offer them.
    """
    tools = []
    for _path, methods in document["paths"].items():
        for _method, op in methods.items():
            properties: dict[str, Any] = {}
            required: list[str] = []
            for p in op.get("parameters", []):
                properties[p["name"]] = {**p["schema"], "description": p["description"]}
                if p.get("required"):
                    required.append(p["name"])
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                properties.update(body["properties"])
                required += body.get("required", [])
            description = f"{op['summary']}.\n\n{op['description']}"
            # A Tool as tool_from_schema makes it, without its argument validator: checking 2,500 schemas
            # against the JSON-schema metaschema takes jsonschema 3 ms each, which these tests do not need.
            tools.append(Tool(name=op["operationId"], description=description, handler=_handler,
                              input_schema={"type": "object", "properties": properties, "required": required},
                              namespace=op["tags"][0], read_only=_method == "get", destructive=_method == "delete",
                              source="schema"))
    return tools, {t["name"]: t["description"] for t in document["tags"]}


class Catalogue:
    """Tools with namespace descriptions, as a tool source offers them to a ToolRegistry."""

    def __init__(self, operations: int) -> None:
        self.tools, self.namespace_descriptions = document_tools(api_document(operations))
