"""A local, stateful fake of the few Stripe API endpoints Kith uses, on 127.0.0.1.

The real `stripe` SDK talks to it (STRIPE_API_BASE). It keeps customers, checkout sessions,
subscriptions with one item and a quantity, and invoices; test helpers play the buyer and
the bank (complete a checkout, fail or pay an invoice, cancel) and return the events Stripe
would send, with snapshots taken at that moment, so tests can deliver them in any order.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

Obj = dict[str, Any]


def parse_form(body: str) -> Obj:
    """Stripe's form encoding (`a[b][0][c]=v`) into nested dicts and lists."""
    root: Obj = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


class FakeStripe:
    def __init__(self, prices: dict[str, int]) -> None:
        self.prices = prices  # price id -> unit amount in cents
        self.customers: dict[str, Obj] = {}
        self.sessions: dict[str, Obj] = {}
        self.subscriptions: dict[str, Obj] = {}
        self.invoices: dict[str, Obj] = {}
        self.requests: list[tuple[str, str, Obj]] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        # each fake (one per test module) names its objects apart: ids are unique in the database
        # a whole test session shares, as Stripe's are
        self._tag = secrets.token_hex(3)
        self.base = ""

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{self._tag}{next(self._ids):06d}"

    # --- the API -----------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: Obj) -> tuple[int, Obj]:
        with self.lock:
            self.requests.append((method, path, params))
            route = (method, re.sub(r"/(cus|cs|sub|si|in|bps)_[A-Za-z0-9]+", r"/{\1}", path))
            ident = path.rsplit("/", 1)[-1]
            if route == ("POST", "/v1/customers"):
                obj = {"id": self._id("cus"), "object": "customer", "email": params.get("email"),
                       "name": params.get("name"), "metadata": params.get("metadata", {})}
                self.customers[obj["id"]] = obj
                return 200, obj
            if route == ("POST", "/v1/checkout/sessions"):
                if params.get("customer") not in self.customers:
                    return _error(400, "No such customer")
                item = params["line_items"][0]
                if item["price"] not in self.prices:
                    return _error(400, f"No such price: '{item['price']}'")
                sid = self._id("cs")
                obj = {"id": sid, "object": "checkout.session", "mode": "subscription", "status": "open",
                       "customer": params["customer"], "client_reference_id": params.get("client_reference_id"),
                       "url": f"{self.base}/pay/{sid}", "subscription": None,
                       "success_url": params["success_url"], "cancel_url": params["cancel_url"],
                       "line_items": params["line_items"],
                       "metadata": (params.get("subscription_data") or {}).get("metadata", {})}
                self.sessions[sid] = obj
                return 200, obj
            if route == ("POST", "/v1/billing_portal/sessions"):
                if params.get("customer") not in self.customers:
                    return _error(400, "No such customer")
                return 200, {"id": self._id("bps"), "object": "billing_portal.session",
                             "customer": params["customer"], "url": f"{self.base}/portal/{params['customer']}",
                             "return_url": params.get("return_url")}
            if route == ("GET", "/v1/subscriptions/{sub}"):
                return (200, json.loads(json.dumps(self.subscriptions[ident]))) if ident in self.subscriptions \
                    else _error(404, "No such subscription")
            if route == ("POST", "/v1/subscription_items/{si}"):
                for sub in self.subscriptions.values():
                    item = sub["items"]["data"][0]
                    if item["id"] == ident:
                        item["quantity"] = int(params["quantity"])
                        item["proration_behavior"] = params.get("proration_behavior")
                        return 200, item
                return _error(404, "No such subscription item")
            if route == ("GET", "/v1/invoices/{in}"):
                return (200, self.invoices[ident]) if ident in self.invoices else _error(404, "No such invoice")
            if route == ("POST", "/v1/invoices/create_preview"):
                sub = self.subscriptions.get(params.get("subscription", ""))
                if sub is None:
                    return _error(404, "No such subscription")
                item = sub["items"]["data"][0]
                return 200, {"object": "invoice", "amount_due": item["price"]["unit_amount"] * item["quantity"],
                             "currency": "usd", "next_payment_attempt": item["current_period_end"]}
            return _error(404, f"Unrecognized request URL ({method}: {path})")

    # --- the buyer and the bank ----------------------------------------------------------------

    def _event(self, event_type: str, obj: Obj) -> Obj:
        return {"id": self._id("evt"), "object": "event", "type": event_type, "api_version": "2026-10-28",
                "created": int(time.time()), "livemode": False,
                "data": {"object": json.loads(json.dumps(obj))}}

    def _invoice(self, sub: Obj, paid: bool) -> Obj:
        item = sub["items"]["data"][0]
        amount = item["price"]["unit_amount"] * item["quantity"]
        inv = {"id": self._id("in"), "object": "invoice", "customer": sub["customer"],
               "number": f"KITH-{len(self.invoices) + 1:04d}", "status": "paid" if paid else "open",
               "amount_due": amount, "amount_paid": amount if paid else 0, "currency": "usd",
               "hosted_invoice_url": f"{self.base}/invoice/{len(self.invoices) + 1}", "created": int(time.time()),
               "parent": {"subscription_details": {"subscription": sub["id"], "metadata": sub["metadata"]}}}
        self.invoices[inv["id"]] = inv
        return inv

    def complete_checkout(self, session_id: str) -> list[Obj]:
        """The buyer pays: a subscription starts, its first invoice is paid."""
        with self.lock:
            session = self.sessions[session_id]
            line = session["line_items"][0]
            now = int(time.time())
            sub_id = self._id("sub")
            sub = {"id": sub_id, "object": "subscription", "customer": session["customer"], "status": "active",
                   "metadata": session["metadata"], "cancel_at_period_end": False, "canceled_at": None,
                   "ended_at": None, "trial_end": None,
                   "items": {"object": "list", "data": [{
                       "id": self._id("si"), "object": "subscription_item", "quantity": int(line["quantity"]),
                       "price": {"id": line["price"], "object": "price", "unit_amount": self.prices[line["price"]]},
                       "current_period_start": now, "current_period_end": now + 30 * 86400}]}}
            self.subscriptions[sub_id] = sub
            session.update(status="complete", subscription=sub_id)
            inv = self._invoice(sub, paid=True)
            return [self._event("checkout.session.completed", session),
                    self._event("customer.subscription.created", sub),
                    self._event("invoice.paid", inv)]

    def fail_payment(self, sub_id: str) -> list[Obj]:
        """The renewal is declined: an open invoice, the subscription past due."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            inv = self._invoice(sub, paid=False)
            sub["status"] = "past_due"
            return [self._event("invoice.payment_failed", inv), self._event("customer.subscription.updated", sub)]

    def pay_open_invoices(self, sub_id: str) -> list[Obj]:
        """A new card works: open invoices are paid, the subscription is active again."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            events = []
            for inv in self.invoices.values():
                if inv["status"] == "open" and inv["parent"]["subscription_details"]["subscription"] == sub_id:
                    inv.update(status="paid", amount_paid=inv["amount_due"])
                    events.append(self._event("invoice.paid", inv))
            sub["status"] = "active"
            return [*events, self._event("customer.subscription.updated", sub)]

    def change_price(self, sub_id: str, price: str) -> list[Obj]:
        with self.lock:
            sub = self.subscriptions[sub_id]
            sub["items"]["data"][0]["price"] = {"id": price, "object": "price", "unit_amount": self.prices[price]}
            return [self._event("customer.subscription.updated", sub)]

    def cancel(self, sub_id: str) -> list[Obj]:
        with self.lock:
            sub = self.subscriptions[sub_id]
            now = int(time.time())
            sub.update(status="canceled", canceled_at=now, ended_at=now)
            return [self._event("customer.subscription.deleted", sub)]


def _error(status: int, message: str) -> tuple[int, Obj]:
    return status, {"error": {"type": "invalid_request_error", "message": message}}


@contextmanager
def fake_stripe(prices: dict[str, int]) -> Iterator[FakeStripe]:
    """Run the fake on a free loopback port; `fake.base` is its URL."""
    fake = FakeStripe(prices)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else url.query
            status, payload = fake.handle(self.command, url.path, parse_form(body))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_fake{time.monotonic_ns()}")
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve
        do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
