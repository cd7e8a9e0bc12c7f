#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz/corpus/<target>/ (seed-* files)
and the deep-nesting inputs of fuzz/regressions/graphql/. Run from the
repository root: python3 fuzz/seeds/make_seeds.py [path/to/provider/fixtures]
(default ../shared/fixtures/providers). The formats are described in
crates/fuzz-harness/src/<target>.rs."""
import base64, hashlib, hmac, json, os, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "..", "shared", "fixtures", "providers")
JWT_SECRET = b"fuzz-secret-fuzz-secret-fuzz-secret-0123"

def write(folder, target, name, data):
    d = os.path.join(ROOT, folder, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# ------------------------------------------------------------------ graphql
# Selector: bits 0-1 caller (0 none, 1 member, 2 admin, 3 service), bits 2-3
# content-type (0 application/json), bit 4 legacy WebSocket protocol.
MEMBER, ADMIN, SERVICE, NONE = 1, 2, 3, 0
AI_INPUT = {"feature": "CHAT", "messages": [{"role": "user", "content": "summarize the sprint"}]}
graphql = [
    ("me-full", MEMBER, {"query": "{ me { id name email role team organization { id name plan { id name monthlyCreditsPerUser } } wallet { monthlyBalance monthlyAllocation permanentBalance held available cycleStart cycleEnd billingMode } } }"}),
    ("me-anonymous", NONE, {"query": "{ me { id } }"}),
    ("wallet-legacy-ws", MEMBER | 0x10, {"query": "{ wallet { available } }"}),
    ("activity-page", MEMBER, {"query": "query($after: String, $f: ActivityFilter) { activity(first: 10, after: $after, filter: $f) { edges { cursor node { id kind permanentDelta } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", "variables": {"after": None, "f": {"features": ["CHAT"]}}}),
    ("activity-bad-cursor", MEMBER, {"query": "{ activity(after: \"nonsense\") { edges { cursor } } }"}),
    ("activity-negative-first", MEMBER, {"query": "{ activity(first: -1) { edges { cursor } } }"}),
    ("activity-from", MEMBER, {"query": "{ activity(filter: {from: \"2999-01-01T00:00:00Z\"}) { edges { cursor } } }"}),
    ("catalog", MEMBER, {"query": "{ aiFeatures { feature defaultProvider defaultModel description } providers { id models supportsStreaming } plans { id name monthlyCreditsPerUser } creditPacks { id name credits priceCents currency } }"}),
    ("purchases", MEMBER, {"query": "{ purchases { id status checkoutUrl completedAt pack { id credits } } byokKeys { provider hint lastUsedAt } }"}),
    ("grant-variables", SERVICE, {"query": "mutation($u: ID!, $a: Credits!, $k: String!) { grantCredits(userId: $u, amount: $a, reason: \"test\", idempotencyKey: $k) { id kind permanentDelta balanceAfter } }", "variables": {"u": "alice", "a": "2.5", "k": "g1"}}),
    ("grant-float-amount", SERVICE, {"query": "mutation { grantCredits(userId: \"alice\", amount: 2.5, reason: \"x\", idempotencyKey: \"e2\") { id } }"}),
    ("grant-blank-reason", SERVICE, {"query": "mutation { grantCredits(userId: \"alice\", amount: \"1\", reason: \"  \", idempotencyKey: \"e3\") { id } }"}),
    ("grant-as-member", MEMBER, {"query": "mutation { grantCredits(userId: \"alice\", amount: \"1\", reason: \"x\", idempotencyKey: \"e4\") { id } }"}),
    ("set-plan", SERVICE, {"query": "mutation { setOrganizationPlan(organizationId: \"acme\", planId: \"team\") { id plan { id monthlyCreditsPerUser } } }"}),
    ("set-plan-unknown", SERVICE, {"query": "mutation { setOrganizationPlan(organizationId: \"acme\", planId: \"platinum\") { id } }"}),
    ("estimate", MEMBER, {"query": "query($i: AiRequestInput!) { estimateCost(input: $i) { maxCredits billingMode } }", "variables": {"i": AI_INPUT}}),
    ("run-ai", MEMBER, {"query": "mutation($i: AiRequestInput!) { runAi(input: $i) { id content billingMode provider model inputTokens outputTokens creditsCharged wallet { available held } } }", "variables": {"i": AI_INPUT}}),
    ("ai-stream", MEMBER, {"query": "subscription { aiStream(input: {feature: CHAT, messages: [{role: \"user\", content: \"hi\"}]}) { delta result { content creditsCharged } } }"}),
    ("wallet-updated", MEMBER, {"query": "subscription { walletUpdated { monthlyBalance permanentBalance held available cycleEnd } }"}),
    ("byok-set", MEMBER, {"query": "mutation($k: String!) { setByokKey(provider: \"openai\", apiKey: $k) { hint } }", "variables": {"k": "sk-wrong-key-000000000"}}),
    ("ai-settings", MEMBER, {"query": "mutation { setAiSettings(fallbackToCredits: true) { fallbackToCredits } removeByokKey(provider: \"openai\") }"}),
    ("purchase", MEMBER, {"query": "mutation($p: ID!, $k: String!) { purchaseCredits(packId: $p, idempotencyKey: $k) { id status pack { id credits } } }", "variables": {"p": "starter", "k": "p1"}}),
    ("org-usage", ADMIN, {"query": "{ orgUsage(from: \"2026-01-01T00:00:00Z\", to: \"2027-01-01T00:00:00Z\", granularity: DAY) { __typename } }"}),
    ("no-such-field", MEMBER, {"query": "{ nosuchfield }"}),
    ("fragments-introspection", MEMBER, {"query": "query Q { ...F __schema { queryType { name } } } fragment F on Query { me { id } }", "operationName": "Q"}),
]
for name, sel, body in graphql:
    write("corpus", "graphql", "seed-" + name, bytes([sel]) + json.dumps(body).encode())
write("corpus", "graphql", "seed-batch", bytes([MEMBER]) + json.dumps([{"query": "{ me { id } }"}, {"query": "{ wallet { available } }"}]).encode())
write("corpus", "graphql", "seed-multipart", bytes([MEMBER | 0x08]) + b'--X\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"query":"{ me { id } }"}\r\n--X--\r\n')

# The stack overflow in async-graphql's parser (and neighbours): deep
# nesting in an argument list, an input object literal, a selection set,
# the variables JSON and a WebSocket (legacy protocol) payload.
def deep_query(depth, open_, close, core="1"):
    return open_ * depth + core + close * depth
# Which depth overflows depends on the build (frame sizes) and on pest's own
# limit (about 700 levels, "stack limit reached"), hence several depths.
for depth in (300, 400, 450, 700, 1000, 1500):
    write("regressions", "graphql", f"deep-list-{depth}", bytes([MEMBER]) + json.dumps({"query": "{ me(x: " + deep_query(depth, "[", "]") + ") { id } }"}).encode())
    write("regressions", "graphql", f"deep-object-{depth}", bytes([MEMBER]) + json.dumps({"query": "{ me(x: " + deep_query(depth, "{a: ", "}") + ") { id } }"}).encode())
for depth in (500, 1500):
    write("regressions", "graphql", f"deep-selection-{depth}", bytes([MEMBER]) + json.dumps({"query": deep_query(depth, "{ me ", "}", "{ id }")}).encode())
    write("regressions", "graphql", f"deep-variables-{depth}", bytes([MEMBER]) + ('{"query":"query($v: String) { me { id } }","variables":{"v":' + deep_query(depth, "[", "]") + "}}").encode())
    write("regressions", "graphql", f"deep-ws-legacy-{depth}", bytes([MEMBER | 0x10]) + json.dumps({"query": "subscription { walletUpdated(x: " + deep_query(depth, "[", "]") + ") { available } }"}).encode())
    write("regressions", "graphql", f"deep-ws-object-{depth}", bytes([SERVICE]) + json.dumps({"query": "subscription { aiStream(input: " + deep_query(depth, "{a: ", "}") + ") { delta } }"}).encode())

# ------------------------------------------------------------------ credits
for i, text in enumerate(["12", "0.125", "-3.5", "0.1", "1.000", "007", "-0", "9223372036854775.807",
                          "-9223372036854775.808", "9223372036854775.808", "1e3", "+1", " 1", "1.", ".5",
                          "1.2345", "0x10", "", "--1", "-.5", "42", "99999999999999999999999", "1_000", "١٢"]):
    write("corpus", "credits", f"seed-{i:02}", text)
write("corpus", "credits", "seed-millis-min", (-(2**63)).to_bytes(8, "little", signed=True))

# ------------------------------------------------------------------ jwt
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def sign(header, claims):
    inp = b64(header) + "." + b64(claims)
    return inp + "." + b64(hmac.new(JWT_SECRET, inp.encode(), hashlib.sha256).digest())
FAR = 4102444800
good = {"sub": "alice", "org": "acme", "role": "member", "exp": FAR}
claims = [
    ("good", good),
    ("full", dict(good, name="Alice", email="a@example.com", team="core", org_name="Acme", iss="x", aud="y")),
    ("expired", dict(good, exp=1)),
    ("role-unknown", dict(good, role="root")),
    ("role-upper", dict(good, role="MEMBER")),
    ("sub-blank", dict(good, sub="   ")),
    ("sub-long", dict(good, sub="s" * 300)),
    ("name-long", dict(good, name="é" * 300)),
    ("exp-float", dict(good, exp=4102444800.5)),
    ("exp-string", dict(good, exp="4102444800")),
    ("no-exp", {k: v for k, v in good.items() if k != "exp"}),
    ("nbf-future", dict(good, nbf=FAR)),
]
for name, c in claims:
    write("corpus", "jwt", "seed-claims-" + name, b"\x01" + json.dumps(c).encode())
write("corpus", "jwt", "seed-header-value", b"\x03" + json.dumps(good).encode())
for name, header in [("none", {"alg": "none"}), ("hs512", {"alg": "HS512", "typ": "JWT"}), ("kid", {"alg": "HS256", "kid": "../../etc/passwd"}), ("rs256", {"alg": "RS256"})]:
    write("corpus", "jwt", "seed-header-" + name, b"\x02" + json.dumps(header).encode() + b"\n" + json.dumps(good).encode())
write("corpus", "jwt", "seed-raw-valid", b"\x00" + sign(b'{"alg":"HS256","typ":"JWT"}', json.dumps(good).encode()).encode())
write("corpus", "jwt", "seed-raw-unsigned", b"\x00" + (b64(b'{"alg":"none"}') + "." + b64(json.dumps(good).encode()) + ".").encode())
write("corpus", "jwt", "seed-raw-garbage", b"\x00a.b.c")

# ------------------------------------------------------------------ stripe
def session_event(eid, kind, i, status="paid", **extra):
    obj = {"id": f"cs_fuzz_{i}", "object": "checkout.session", "payment_status": status,
           "payment_intent": f"pi_fuzz_{i}", "amount_total": 500, "currency": "usd"}
    obj.update(extra)
    return {"id": eid, "object": "event", "type": kind, "livemode": False, "data": {"object": obj}}
def refund_event(eid, i, refunded, pi_object=False):
    pi = {"id": f"pi_fuzz_{i}", "object": "payment_intent"} if pi_object else f"pi_fuzz_{i}"
    return {"id": eid, "object": "event", "type": "charge.refunded", "data": {"object": {
        "id": f"ch_fuzz_{i}", "object": "charge", "payment_intent": pi, "amount": 500,
        "amount_refunded": refunded, "refunded": refunded >= 500}}}
stripe = [
    ("paid", session_event("evt_paid_0", "checkout.session.completed", 0)),
    ("unpaid", session_event("evt_unpaid_1", "checkout.session.completed", 1, "unpaid", payment_intent={"id": "pi_fuzz_1"})),
    ("async-succeeded", session_event("evt_async_1", "checkout.session.async_payment_succeeded", 1)),
    ("async-failed", session_event("evt_failed_2", "checkout.session.async_payment_failed", 2)),
    ("expired", session_event("evt_expired_3", "checkout.session.expired", 3)),
    ("wrong-amount", session_event("evt_amount_4", "checkout.session.completed", 4, amount_total=1)),
    ("wrong-currency", session_event("evt_currency_4", "checkout.session.completed", 4, currency="eur")),
    ("other-purchase", session_event("evt_other_5", "checkout.session.completed", 5, client_reference_id="someone-else")),
    ("refund-partial", refund_event("evt_refund_0a", 0, 200)),
    ("refund-full", refund_event("evt_refund_0b", 0, 500, pi_object=True)),
    ("refund-over", refund_event("evt_refund_1", 1, 900)),
    ("ignored", {"id": "evt_cus", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}),
]
for name, event in stripe:
    write("corpus", "stripe_webhook", "seed-" + name, b"\x00" + json.dumps(event).encode())
body = json.dumps(stripe[0][1]).encode()
write("corpus", "stripe_webhook", "seed-header-stale", b"\x01t=1700000000,v1=" + b"00" * 32 + b"\n" + body)
write("corpus", "stripe_webhook", "seed-header-garbage", b"\x01garbage\n" + body)

# ------------------------------------------------------------------ plugin_response
# Selector: bit 0 plugin (0 openai, 1 anthropic), bits 1-2 entry point
# (0 response, 1 one event "name\ndata", 2 an SSE stream, 3 classify with a
# big-endian status).
def fixture(provider, name):
    with open(os.path.join(FIXTURES, provider, name), "rb") as f:
        return f.read()
for provider, bit in (("openai", 0), ("anthropic", 1)):
    for name in sorted(os.listdir(os.path.join(FIXTURES, provider))):
        data = fixture(provider, name)
        stem = name.rsplit(".", 1)[0]
        if "response" in name:
            write("corpus", "plugin_response", f"seed-{provider}-{stem}", bytes([bit]) + data)
        elif name.endswith(".sse"):
            write("corpus", "plugin_response", f"seed-{provider}-{stem}", bytes([bit | 4]) + data)
            for j, block in enumerate(data.decode().split("\n\n")[:4]):
                event, lines = "", []
                for line in block.splitlines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        lines.append(line[5:].lstrip())
                if lines:
                    write("corpus", "plugin_response", f"seed-{provider}-{stem}-event{j}",
                          bytes([bit | 2]) + event.encode() + b"\n" + "\n".join(lines).encode())
        elif name.startswith("error-"):
            status = int(name.split("-")[1].split(".")[0])
            write("corpus", "plugin_response", f"seed-{provider}-{stem}", bytes([bit | 6]) + status.to_bytes(2, "big") + data)
