"""Drives Tally's Rakam collection API with Rakam's published Python clients.

    python clients.py BASE_URL WRITE_KEY READ_KEY MASTER_KEY SCENARIO

RC is `rakam-client` 0.5 (module `rakam_client`, generated from Rakam's API spec), RL is
`rakam` 0.1.6; deploy/test installs both, pinned, in a virtual environment. Each scenario
prints one JSON object of what it observed to stdout; tests/rakam_clients.rs asserts on it.
A client exception the scenario did not expect ends the run with exit status 1 and a message
on stderr; an expected refusal that does not come is recorded as such (the Rust side then
fails on the observation, showing what happened instead).

Event times are on 2024-10-22 (UTC), the day of the harness's pinned clock (10:30:00Z), so
Countly's reads for that day see every event; events without `_time` take the server's
clock.

Scenarios:
  typed    collect (typed properties, both `_time` forms, the accepted coercions), batch over
           several collections, bulk through RC and through RL (`?commit=false`), commit
           through both, add fields to a schema, then read schemas and collections back.
  seed     one event into `orders`, fixing its field types (run before `refused`).
  refused  wrong types for `orders`' fields through collect, batch and RL's bulk, and
           missing or wrong keys on every route; then reads `orders`' schema and the
           collections again (unchanged: nothing was written).
  keys     key sets through RC's AdminApi: create, check, collect with the new set, revoke
           it with its own master key, check again, and see its keys refused (RC and RL).
  strict   a strict project: undeclared collections and fields refused through RC and RL,
           declared ones taken.
  sql      typed events collected with RC, then queried with RL's execute_sql and RC's
           QueryApi.execute (every column type the clients convert), and a bad query
           refused through both.
  users    user profiles through RC's UserApi (set, set once, increment, unset, batch
           create, get, a user's events, metadata, search, segments) and RL (set, batch
           operations, batch update), typed and limited, with refusals that write nothing
           and missing or wrong keys; routes or fields no client has go through `requests`
           (RL's dependency).
"""

import builtins
import itertools
import json
import os
import sys


def fail(message):
    print("clients.py: " + message, file=sys.stderr)
    sys.exit(1)


if len(sys.argv) != 6:
    fail("usage: clients.py BASE_URL WRITE_KEY READ_KEY MASTER_KEY SCENARIO")
BASE, WRITE, READ, MASTER, SCENARIO = sys.argv[1:]
# The project's id (check-api-keys names it), from the environment.
PROJECT = os.environ.get("RAKAM_PROJECT", "")
# Well-formed (40 hex digits, as Tally's keys are) but no project's key.
BOGUS = "0123456789abcdef0123456789abcdef01234567"

import rakam_client  # noqa: E402
from rakam_client.rest import ApiException  # noqa: E402


def load_rl():
    """Imports `rakam` 0.1.6, which is Python 2 code, without changing it: the names it
    takes from Python 2 are supplied first (`itertools.izip`, `unicode`, `long`, `xrange`),
    and its SQL module, which takes len() of a map, gets a `map` that returns a list."""
    builtins.unicode = str
    builtins.long = int
    builtins.xrange = range
    itertools.izip = zip
    import rakam
    import rakam.exceptions
    import rakam.sql

    def list_map(function, *iterables):
        return list(builtins.map(function, *iterables))

    rakam.sql.map = list_map
    return rakam


rakam = load_rl()
RakamError = rakam.exceptions.RakamError

# RC: one client; header keys (read_key, master_key) come from the shared Configuration,
# set for each call by `headers`. Body keys go in the request model's `api` object.
rc = rakam_client.ApiClient(host=BASE)
collect_api = rakam_client.CollectApi(rc)
admin_api = rakam_client.AdminApi(rc)
config = rakam_client.Configuration()


def headers(**keys):
    """The header keys RC sends on its next calls (only these)."""
    config.api_key = {k: v for k, v in keys.items() if v is not None}


def context(key):
    """The body's `api` object, as an application using RC fills it."""
    library = rakam_client.Library(name="rakam-python-client", version="0.5")
    return rakam_client.EventContext(api_key=key, library=library)


def event(collection, properties, key=None):
    """An RC event; `key` is for a single collect (batch events carry none)."""
    api = context(key) if key is not None else None
    return rakam_client.Event(collection=collection, api=api, properties=properties)


def rl(master):
    creds = rakam.RakamCredentials(read_key=READ, write_key=WRITE, master_key=master)
    return rakam.RakamClient(BASE, creds)


def body_of(exc):
    try:
        return json.loads(exc.body)
    except (TypeError, ValueError):
        return exc.body


def call(label, fn):
    """A call that must succeed."""
    try:
        return fn()
    except ApiException as e:
        fail("%s: unexpected HTTP %s: %r" % (label, e.status, e.body))
    except RakamError as e:
        fail("%s: unexpected %s: %s" % (label, type(e).__name__, e))
    except Exception as e:  # the clients' own errors (a model the server broke, ...)
        fail("%s: unexpected %s: %s" % (label, type(e).__name__, e))


def refused_rc(label, fn):
    """An RC call that must raise ApiException: its status and JSON body."""
    try:
        result = fn()
    except ApiException as e:
        return {"status": e.status, "body": body_of(e)}
    except Exception as e:
        fail("%s: expected an ApiException, got %s: %s" % (label, type(e).__name__, e))
    return {"unexpected_success": repr(result)}


def refused_rl(label, fn):
    """An RL call that must raise a RakamError: its class and message."""
    try:
        result = fn()
    except RakamError as e:
        return {"exception": type(e).__name__, "message": str(e)}
    except Exception as e:
        fail("%s: expected a RakamError, got %s: %s" % (label, type(e).__name__, e))
    return {"unexpected_success": repr(result)}


def fields(field_list):
    """Schema fields as sorted [name, type] pairs (a duplicate would show twice)."""
    return sorted([f.name, f.type] for f in field_list)


def schemas(names):
    headers(read_key=READ)
    found = call(
        "schema",
        lambda: admin_api.schema(project_schema=rakam_client.ProjectSchema(names=names)),
    )
    return {
        "names": sorted(c.name for c in found),
        "fields": {c.name: fields(c.fields or []) for c in found},
    }


def collections():
    headers(read_key=READ)
    return call("collections", lambda: admin_api.collections())


def success(answer):
    """A SuccessMessage answer's `success` (RC parses `{success, message}`)."""
    return answer.success


def typed():
    obs = {}
    purchases = [
        # The first values fix the types: STRING, LONG, DOUBLE (5.0 stays a float),
        # BOOLEAN, ARRAY_STRING, ARRAY_STRING (empty), MAP_STRING, MAP_LONG.
        {
            "_user": "u1",
            "_time": "2024-10-22T09:15:00.000Z",
            "plan": "pro",
            "quantity": 3,
            "price": 5.0,
            "gift": True,
            "tags": ["red", "blue"],
            "notes": [],
            "attrs": {"color": "red"},
            "sizes": {"s": 1, "m": 2},
        },
        # `_time` in integer milliseconds (09:40:00Z); 2.0 into LONG, 7 into DOUBLE.
        {
            "_user": "u2",
            "_time": 1729590000000,
            "plan": "basic",
            "quantity": 2.0,
            "price": 7,
            "gift": False,
            "tags": [],
            "notes": ["gift wrap"],
        },
        # No `_time`: the server's clock. A number and a boolean into STRING, as text.
        {"_user": "u1", "plan": 42, "quantity": 1, "gift": True},
        {"_user": "u3", "plan": True, "price": 12.5},
    ]
    obs["collect"] = [
        call(
            "collect %d" % i,
            lambda p=p: collect_api.collect_event(event=event("purchase", p, WRITE)),
        )
        for i, p in enumerate(purchases)
    ]
    batch = rakam_client.EventList(
        api=context(WRITE),
        events=[
            event(
                "pageview",
                {"_user": "u1", "_time": "2024-10-22T08:05:00.000Z", "url": "home", "load_ms": 120},
            ),
            event("pageview", {"_user": "u2", "url": "pricing", "load_ms": 80}),
            event(
                "signup",
                {"_user": "u2", "_time": "2024-10-22T10:00:00.000Z", "method": "email", "referred": False},
            ),
            event("purchase", {"_user": "u2", "plan": "pro", "quantity": 1, "price": 9.99}),
        ],
    )
    obs["batch"] = call("batch", lambda: collect_api.batch_events(event_list=batch))
    # RC's bulk: master key in the body, no query string.
    bulk = rakam_client.EventList(
        api=context(MASTER),
        events=[
            event(
                "imported",
                {"_user": "u4", "_time": "2024-10-22T07:00:00.000Z", "source": "csv", "rows": 10},
            ),
            event(
                "imported",
                {"_user": "u4", "_time": "2024-10-22T07:30:00.000Z", "source": "csv", "rows": 12},
            ),
        ],
    )
    obs["rc_bulk"] = success(call("rc bulk", lambda: collect_api.bulk_events(event_list=bulk)))
    # RL's bulk: `?commit=false`, master key in the body only.
    client = rl(MASTER)
    obs["rl_bulk"] = call(
        "rl bulk",
        lambda: client.send_bulk_events(
            [
                {"collection": "imported", "properties": {"_user": "u5", "source": "api", "rows": 3}},
                {
                    "collection": "legacy",
                    "properties": {"_user": "u5", "_time": "2024-10-22T06:00:00.000Z", "kind": "old", "weight": 0.5},
                },
                {"collection": "legacy", "properties": {"_user": "u6", "kind": "old", "weight": 1}},
            ]
        ),
    )
    headers(master_key=MASTER)
    obs["rc_commit"] = success(
        call(
            "rc commit",
            lambda: collect_api.commit_bulk_events(
                commit_bulk_events=rakam_client.CommitBulkEvents(collections=["imported"])
            ),
        )
    )
    # RL commits every collection (`"collections": null`); True when the answer is 200.
    obs["rl_commit"] = call("rl commit", lambda: client.commit_bulk_events())
    headers(master_key=MASTER)
    added = call(
        "schema add",
        lambda: admin_api.add_fields_to_schema(
            project_add_fields_to_schema=rakam_client.ProjectAddFieldsToSchema(
                collection="signup",
                fields=[
                    rakam_client.SchemaField(name="campaign", type="STRING"),
                    rakam_client.SchemaField(name="score", type="DOUBLE"),
                ],
            )
        ),
    )
    obs["schema_add"] = fields(added)
    obs["schema"] = schemas(["purchase", "pageview", "signup", "imported", "legacy"])
    obs["collections"] = collections()
    return obs


ORDER = {
    "_user": "s1",
    "_time": "2024-10-22T09:00:00.000Z",
    "plan": "pro",
    "quantity": 2,
    "price": 4.5,
    "gift": False,
    "tags": ["a"],
}


def seed():
    return {
        "collect": call(
            "seed collect", lambda: collect_api.collect_event(event=event("orders", ORDER, WRITE))
        ),
        "schema": schemas(["orders"]),
        "collections": collections(),
    }


def refused():
    obs = {}

    def order(**changes):
        # A good order with one field changed, and a field `orders` has never had: a
        # refused event must not add it to the schema either.
        props = dict(ORDER, _user="s2", coupon="WELCOME")
        props.update(changes)
        return props

    def collect(props, key=WRITE):
        return lambda: collect_api.collect_event(event=event("orders", props, key))

    # Each value below cannot be read as the field's type.
    wrong = {
        "quantity_text": ("quantity", order(quantity="three")),
        "quantity_fraction": ("quantity", order(quantity=2.5)),
        "price_text": ("price", order(price="cheap")),
        "gift_text": ("gift", order(gift="yes")),
        "gift_number": ("gift", order(gift=1)),
        "plan_object": ("plan", order(plan={"tier": "pro"})),
        "tags_text": ("tags", order(tags="a")),
        "time_text": ("_time", order(_time="yesterday-ish")),
    }
    obs["collect_wrong_type"] = {
        name: dict(refused_rc("collect " + name, collect(props)), field=field)
        for name, (field, props) in wrong.items()
    }
    # One bad event refuses the whole batch, the good events with it (one of them in a
    # collection that does not exist yet).
    batch = rakam_client.EventList(
        api=context(WRITE),
        events=[
            event("orders", order()),
            event("visits", {"_user": "s2", "_time": "2024-10-22T09:05:00.000Z", "page": "home"}),
            event("orders", order(quantity="many")),
        ],
    )
    obs["batch_wrong_type"] = refused_rc(
        "batch wrong type", lambda: collect_api.batch_events(event_list=batch)
    )
    obs["rl_bulk_wrong_type"] = refused_rl(
        "rl bulk wrong type",
        lambda: rl(MASTER).send_bulk_events(
            [
                {"collection": "orders", "properties": order()},
                {"collection": "orders", "properties": order(price="free")},
            ]
        ),
    )

    good = order()
    keys = {}
    keys["collect_no_api"] = refused_rc(
        "collect without api",
        lambda: collect_api.collect_event(
            event=rakam_client.Event(collection="orders", properties=good)
        ),
    )
    keys["collect_no_key"] = refused_rc(
        "collect without api_key",
        lambda: collect_api.collect_event(
            event=rakam_client.Event(
                collection="orders", api=rakam_client.EventContext(), properties=good
            )
        ),
    )
    keys["collect_bogus_key"] = refused_rc("collect bogus key", collect(good, BOGUS))
    keys["collect_read_key"] = refused_rc("collect read key", collect(good, READ))
    keys["batch_bogus_key"] = refused_rc(
        "batch bogus key",
        lambda: collect_api.batch_events(
            event_list=rakam_client.EventList(api=context(BOGUS), events=[event("orders", good)])
        ),
    )
    keys["rc_bulk_write_key"] = refused_rc(
        "rc bulk write key",
        lambda: collect_api.bulk_events(
            event_list=rakam_client.EventList(api=context(WRITE), events=[event("orders", good)])
        ),
    )

    def rc_commit(master):
        headers(master_key=master)
        return collect_api.commit_bulk_events(
            commit_bulk_events=rakam_client.CommitBulkEvents(collections=["orders"])
        )

    keys["rc_commit_no_key"] = refused_rc("rc commit without key", lambda: rc_commit(None))
    keys["rc_commit_write_key"] = refused_rc("rc commit write key", lambda: rc_commit(WRITE))

    def rc_schema(read):
        headers(read_key=read)
        return admin_api.schema(project_schema=rakam_client.ProjectSchema(names=["orders"]))

    def rc_collections(read):
        headers(read_key=read)
        return admin_api.collections()

    def rc_add(master):
        headers(master_key=master)
        return admin_api.add_fields_to_schema(
            project_add_fields_to_schema=rakam_client.ProjectAddFieldsToSchema(
                collection="orders",
                fields=[rakam_client.SchemaField(name="coupon", type="STRING")],
            )
        )

    keys["schema_bogus_key"] = refused_rc("schema bogus key", lambda: rc_schema(BOGUS))
    keys["collections_no_key"] = refused_rc("collections without key", lambda: rc_collections(None))
    keys["schema_add_read_key"] = refused_rc("schema add read key", lambda: rc_add(READ))
    keys["rl_bulk_write_key"] = refused_rl(
        "rl bulk write key",
        lambda: rl(WRITE).send_bulk_events([{"collection": "orders", "properties": good}]),
    )
    keys["rl_bulk_bogus_key"] = refused_rl(
        "rl bulk bogus key",
        lambda: rl(BOGUS).send_bulk_events([{"collection": "orders", "properties": good}]),
    )
    keys["rl_commit_bogus_key"] = refused_rl(
        "rl commit bogus key", lambda: rl(BOGUS).commit_bulk_events()
    )
    obs["keys"] = keys
    # Nothing of that was written: the schema and the collections are the seed's.
    obs["schema"] = schemas(["orders"])
    obs["collections"] = collections()
    return obs


# The first profile of the `users` scenario, as RC sets it (its first values fix the
# types: STRING, LONG, DOUBLE, BOOLEAN, ARRAY_STRING, MAP_LONG).
ADA = {
    "plan": "pro",
    "age": 31,
    "score": 4.5,
    "beta": True,
    "tags": ["a", "b"],
    "langs": {"en": 1, "fr": 2},
}

# Filters of the search language, each asked for the ids it keeps (sorted by id).
USER_FILTERS = [
    "plan = 'pro'",
    "plan != 'pro'",
    "age > 30",
    "age >= 35",
    "age <= 26",
    "age < 26",
    "plan in ('free', 'basic')",
    "plan not in ('free', 'basic')",
    "age is null",
    "logins is not null",
    "not (city = 'Oslo') and city is not null",
    "city = 'Bern' or (plan = 'pro' and age < 35)",
    "id = 'eli' or id = 7",
    "score > 6.4",
    "visits >= 4 and visits < 5",
    "id = 'nobody'",
]

# Filters the language cannot read: each a 400.
BAD_USER_FILTERS = [
    "plan = ",
    "plan ~ 'pro'",
    "(age > 30",
    "age >= thirty",
    "plan = 'pro' age > 1",
]


def raw_post(path, body, **header_keys):
    """A POST through `requests` (for what no client sends): its status and JSON body."""
    import requests

    r = requests.post(BASE + path, json=body, headers=header_keys)
    try:
        answer = r.json()
    except ValueError:
        answer = r.text
    return {"status": r.status_code, "body": answer}


def users():
    obs = {}
    refusals = {}
    keys = {}
    user_api = rakam_client.UserApi(rc)

    def user(uid, props, key=WRITE):
        return rakam_client.User(id=uid, api=rakam_client.UserContext(api_key=key), properties=props)

    def set_props(uid, props, key=WRITE):
        return lambda: user_api.set_properties(user=user(uid, props, key))

    def get(uid, read=READ):
        headers(read_key=read)
        return user_api.get_user(user_get_user=rakam_client.UserGetUser(user=uid))

    def profile(uid):
        found = call("get_user %s" % uid, lambda: get(uid))
        return {"id": found.id, "properties": found.properties}

    def increment(uid, prop, value):
        # RC sends the master key as a header, and the body's `api` as an application
        # fills it.
        headers(master_key=MASTER)
        return user_api.increment_property(
            user_increment_property=rakam_client.UserIncrementProperty(
                api=rakam_client.UserContext(api_key=WRITE), id=uid, _property=prop, value=value
            )
        )

    def search(filter_text=None, sorting=None, columns=None, limit=None, read=READ):
        headers(read_key=read)
        return user_api.search_users(
            user_search_users=rakam_client.UserSearchUsers(
                filter=filter_text, sorting=sorting, columns=columns, limit=limit
            )
        )

    def query_result(r):
        return {
            "metadata": [[m.name, m.type] for m in r.metadata or []],
            "result": r.result,
            "properties": r.properties,
            "failed": r.failed,
        }

    # RC: set, set once (only `city` is new), then increments: `visits` is new (2.0, a
    # whole number, makes it LONG), `score` is DOUBLE.
    obs["set"] = call("set_properties ada", set_props("ada", ADA))
    obs["set_once"] = call(
        "set_properties_once ada",
        lambda: user_api.set_properties_once(user=user("ada", {"plan": "basic", "city": "Oslo"})),
    )
    obs["ada_set"] = profile("ada")
    obs["increment"] = []
    obs["visits"] = []
    for _ in range(2):
        obs["increment"].append(success(call("increment visits", lambda: increment("ada", "visits", 2.0))))
        obs["visits"].append(profile("ada")["properties"].get("visits"))
    obs["increment"].append(success(call("increment score", lambda: increment("ada", "score", 2.0))))
    obs["unset"] = success(
        call(
            "unset_property ada",
            lambda: user_api.unset_property(
                user_unset_property=rakam_client.UserUnsetProperty(
                    api=rakam_client.UserContext(api_key=WRITE), id="ada", properties=["tags"]
                )
            ),
        )
    )
    # Refused, writing nothing: text is not a number; "abc" is not a LONG (`active`, new,
    # comes first and `plan` is a good value: neither is written).
    refusals["increment_text"] = dict(
        refused_rc("increment plan", lambda: increment("ada", "plan", 2.0)), field="plan"
    )
    refusals["wrong_type"] = dict(
        refused_rc(
            "set age text",
            set_props("ada", {"active": True, "age": "abc", "plan": "basic"}),
        ),
        field="age",
    )

    # RC's batch create (write key header); one id is a number, answered as sent.
    headers(write_key=WRITE)
    created = [
        user("bob", {"plan": "basic", "age": 25}),
        user("cy", {"plan": "pro", "age": 42, "city": "Rome"}),
        user(7, {"plan": "free"}),
    ]
    obs["create_users"] = call(
        "create_users",
        lambda: user_api.create_users(user_create_users=rakam_client.UserCreateUsers(users=created)),
    )
    obs["no_profile"] = refused_rc("get_user nobody", lambda: get("nobody"))

    # A user's events: ada's three, collected one by one in time order, and one of bob's.
    collected = [
        ("pageview", {"_user": "ada", "_time": "2024-10-22T08:00:00.000Z", "url": "home", "load_ms": 120}),
        ("purchase", {"_user": "ada", "_time": "2024-10-22T09:00:00.000Z", "plan": "pro", "price": 9.5}),
        ("pageview", {"_user": "bob", "_time": "2024-10-22T09:30:00.000Z", "url": "home", "load_ms": 50}),
        ("pageview", {"_user": "ada", "_time": "2024-10-22T10:00:00.000Z", "url": "pricing", "load_ms": 80}),
    ]
    obs["collect"] = [
        call("collect %d" % i, lambda c=c, p=p: collect_api.collect_event(event=event(c, p, WRITE)))
        for i, (c, p) in enumerate(collected)
    ]

    def events(uid, limit=None):
        headers(read_key=READ)
        found = call(
            "get_events %s" % uid,
            lambda: user_api.get_events(
                user_get_events=rakam_client.UserGetEvents(user=uid, limit=limit)
            ),
        )
        return [{"collection": e.collection, "properties": e.properties} for e in found]

    obs["events"] = events("ada")
    obs["events_limit"] = events("ada", 2)

    # RL: set; batch operations (master key in the body), each user's in order: dee's
    # `city` is set, unset, set again; bob's `plan` is kept (set once) and `age` + 1.
    client = rl(MASTER)
    obs["rl_set"] = call("rl set_user_properties", lambda: client.set_user_properties("dee", {"plan": "pro", "age": 35}))
    obs["rl_batch"] = call(
        "rl user_batch_operations",
        lambda: client.user_batch_operations(
            [
                {"id": "dee", "set_properties": {"city": "Lima"}, "increment_properties": {"logins": 1}},
                {"id": "bob", "set_properties_once": {"city": "Bern", "plan": "pro"}, "increment_properties": {"age": 1}},
                {"id": "dee", "increment_properties": {"logins": 2}, "unset_properties": ["city"]},
                {"id": "dee", "set_properties": {"city": "Quito"}},
            ]
        ),
    )
    obs["rl_update"] = call(
        "rl user_batch_update",
        lambda: client.user_batch_update([{"id": "eli", "properties": {"plan": "free", "age": 19}}]),
    )
    # What the route answers (RL reads only the status): `1`.
    obs["batch_operations_answer"] = raw_post(
        "/user/batch_operations",
        {"api": {"api_key": MASTER}, "data": [{"id": "eli", "set_properties_once": {"plan": "pro"}}]},
    )
    # One user's operations are all or none: a good `plan` before a bad increment, or
    # before a value that takes the profile past 64 KiB.
    refusals["rl_batch_type"] = refused_rl(
        "rl batch increment text",
        lambda: client.user_batch_operations(
            [
                {"id": "dee", "set_properties": {"plan": "basic"}},
                {"id": "dee", "increment_properties": {"city": 1}},
            ]
        ),
    )
    refusals["rl_batch_too_large"] = refused_rl(
        "rl batch too large",
        lambda: client.user_batch_operations(
            [
                {"id": "dee", "set_properties": {"plan": "basic"}},
                {"id": "dee", "set_properties": {"city": "x" * 70000}},
            ]
        ),
    )
    # The limits: 64 KiB and 256 properties a profile.
    refusals["too_large"] = refused_rc("set 70000 characters", set_props("ada", {"city": "x" * 70000}))
    refusals["too_many"] = refused_rc(
        "set 257 properties", set_props("eli", {"p%03d" % i: i for i in range(255)})
    )

    # Missing or wrong keys: 403 with a JSON error (RL: BadKeyError with its message).
    keys["get_user_no_key"] = refused_rc("get_user without key", lambda: get("ada", read=None))
    keys["set_properties_read_key"] = refused_rc(
        "set_properties read key", set_props("ada", {"plan": "basic"}, key=READ)
    )
    keys["search_bogus_key"] = refused_rc("search bogus key", lambda: search("plan = 'pro'", read=BOGUS))
    keys["rl_batch_write_key"] = refused_rl(
        "rl batch write key",
        lambda: rl(WRITE).user_batch_operations([{"id": "dee", "set_properties": {"plan": "basic"}}]),
    )
    segment = rakam_client.UserCreateSegment(
        name="Pro users", table_name="pro_users", filter_expression="plan = 'pro'"
    )

    def create_segment():
        return user_api.create_segment(user_create_segment=segment)

    def read_key_segment():
        # As generated, RC sends only the read key with create_segment.
        headers(read_key=READ)
        return create_segment()

    keys["create_segment_read_key"] = refused_rc("create_segment read key", read_key_segment)

    obs["profiles"] = {uid: profile(uid) for uid in ["ada", "bob", "cy", "7", "dee", "eli"]}
    headers(read_key=READ)
    meta = call("metadata", lambda: user_api.get_metadata())
    obs["metadata"] = {
        "columns": [[c.name, c.type] for c in meta.columns or []],
        "identifier_column": meta.identifier_column,
    }

    # Search: the contract's example through RC ("DESC": RC's model takes it through its
    # constructor, whose setter would allow only "asc" and "desc"), a top 2 without a
    # filter, the filter language (ids sorted with RC's "asc") and unreadable filters.
    obs["search"] = query_result(
        call(
            "search",
            lambda: search(
                "plan = 'pro' and age >= 30", rakam_client.Sorting(column="age", order="DESC"), ["id", "age"], 10
            ),
        )
    )
    obs["search_top"] = query_result(
        call("search top", lambda: search(None, rakam_client.Sorting(column="age", order="DESC"), ["id", "age"], 2))
    )
    obs["filters"] = {}
    for f in USER_FILTERS:
        found = call(
            "search %s" % f, lambda f=f: search(f, rakam_client.Sorting(column="id", order="asc"), ["id"], 100)
        )
        obs["filters"][f] = [row[0] for row in found.result or []]
    refusals["bad_filters"] = {
        f: refused_rc("search %s" % f, lambda f=f: search(f, None, ["id"], 10)) for f in BAD_USER_FILTERS
    }
    obs["raw_search"] = raw_post(
        "/user/search",
        {
            "filter": "city in ('Oslo', 'Rome') or age < 20",
            "sorting": {"column": "id", "order": "ASC"},
            "columns": ["id", "city", "age"],
            "limit": 10,
        },
        read_key=READ,
    )

    # Segments: RC sends the master key only when the application adds it as a default
    # header; RC's search has no `segment` field, so those go through `requests`.
    headers()
    rc.set_default_header("master_key", MASTER)
    try:
        obs["create_segment"] = success(call("create_segment", create_segment))
    finally:
        del rc.default_headers["master_key"]
    by_id = {"column": "id", "order": "ASC"}
    obs["segment_search"] = raw_post(
        "/user/search", {"segment": "pro_users", "columns": ["id"], "sorting": by_id}, read_key=READ
    )
    obs["segment_and_filter"] = raw_post(
        "/user/search",
        {"segment": "pro_users", "filter": "age < 35", "columns": ["id"], "sorting": by_id},
        read_key=READ,
    )
    obs["refused"] = refusals
    obs["keys"] = keys
    return obs


def keys():
    """Key sets through RC's AdminApi: a second set is created, checked, used to collect,
    revoked with its own master key, and then refused; the first set keeps working."""
    obs = {}
    headers(master_key=MASTER)
    second = call("create_api_keys", lambda: admin_api.create_api_keys())
    obs["second_has_keys"] = all(
        k and len(k) == 40 for k in (second.write_key, second.read_key, second.master_key)
    )
    obs["second_differs"] = second.write_key != WRITE and second.master_key != MASTER

    def check(sets):
        headers()
        body = rakam_client.ProjectCheckApiKeys(keys=sets, project=PROJECT)
        return call("check_api_keys", lambda: admin_api.check_api_keys(project_check_api_keys=body))

    both = [
        rakam_client.ProjectApiKeys(
            master_key=second.master_key, read_key=second.read_key, write_key=second.write_key
        ),
        rakam_client.ProjectApiKeys(write_key=WRITE),
        rakam_client.ProjectApiKeys(read_key=BOGUS),
    ]
    obs["check_before"] = check(both)
    obs["collect_with_second"] = call(
        "collect_event",
        lambda: collect_api.collect_event(
            event=event("clicks", {"_user": "k1", "n": 1}, key=second.write_key)
        ),
    )
    headers(read_key=second.read_key)
    obs["collections_with_second_read"] = call("collections", lambda: admin_api.collections())
    # RC sends the master key being revoked as the header, and no body.
    headers()
    revoked = call(
        "revoke_api_keys", lambda: admin_api.revoke_api_keys(master_key=second.master_key)
    )
    obs["revoked"] = success(revoked)
    obs["check_after"] = check(both)
    obs["collect_with_revoked"] = refused_rc(
        "collect_event revoked",
        lambda: collect_api.collect_event(
            event=event("clicks", {"_user": "k1", "n": 1}, key=second.write_key)
        ),
    )
    headers(read_key=second.read_key)
    obs["collections_with_revoked_read"] = refused_rc(
        "collections revoked", lambda: admin_api.collections()
    )
    # The project's last set stays.
    headers()
    obs["revoke_last"] = refused_rc(
        "revoke the last set", lambda: admin_api.revoke_api_keys(master_key=MASTER)
    )
    obs["collect_with_first"] = call(
        "collect_event",
        lambda: collect_api.collect_event(event=event("clicks", {"_user": "k1"}, key=WRITE)),
    )
    # RL's bulk with the revoked master key in the body: a 403 RL reads as BadKeyError.
    obs["rl_bulk_revoked"] = refused_rl(
        "RL bulk revoked",
        lambda: rl(second.master_key).send_bulk_events(
            [{"collection": "clicks", "properties": {"_user": "k1"}}]
        ),
    )
    return obs


def strict():
    """A strict project (created so by the test): undeclared collections and fields are
    refused through RC's collect and batch and RL's bulk, and nothing is written; once
    declared with RC's add_fields_to_schema, the same event is taken."""
    obs = {}
    order = {"_user": "s1", "_time": "2024-10-22T09:00:00.000Z", "amount": 5}
    obs["collect_undeclared"] = refused_rc(
        "collect undeclared",
        lambda: collect_api.collect_event(event=event("orders", order, WRITE)),
    )
    headers(master_key=MASTER)
    added = call(
        "add_fields_to_schema",
        lambda: admin_api.add_fields_to_schema(
            project_add_fields_to_schema=rakam_client.ProjectAddFieldsToSchema(
                collection="orders",
                fields=[rakam_client.SchemaField(name="amount", type="LONG")],
            )
        ),
    )
    obs["declared"] = fields(added)
    obs["collect_declared"] = call(
        "collect declared", lambda: collect_api.collect_event(event=event("orders", order, WRITE))
    )
    batch = rakam_client.EventList(
        api=context(WRITE),
        events=[
            event("orders", order),
            event("orders", dict(order, coupon="x")),
        ],
    )
    obs["batch_undeclared_field"] = refused_rc(
        "batch undeclared field", lambda: collect_api.batch_events(event_list=batch)
    )
    obs["rl_bulk_undeclared"] = refused_rl(
        "RL bulk undeclared",
        lambda: rl(MASTER).send_bulk_events([{"collection": "refunds", "properties": order}]),
    )
    obs["collections"] = collections()
    obs["schema"] = schemas(["orders"])
    return obs


def sql():
    """SQL through both clients: RL's execute_sql (which converts each cell by its Rakam
    type) and RC's QueryApi.execute, over events RC collected just before."""
    obs = {}
    rows = [
        {"_user": "q1", "_time": "2024-10-22T09:00:00.000Z", "amount": 5, "price": 2.5,
         "paid": True, "tags": ["a", "b"], "plan": "pro"},
        {"_user": "q2", "_time": "2024-10-22T09:30:00.000Z", "amount": 7, "price": 1.25,
         "paid": False, "tags": [], "plan": "free"},
    ]
    batch = rakam_client.EventList(api=context(WRITE), events=[event("sales", r) for r in rows])
    call("batch", lambda: collect_api.batch_events(event_list=batch))
    query = "SELECT _user, _time, amount, price, paid, tags, plan FROM sales ORDER BY _time"
    result = call("RL execute_sql", lambda: rl(MASTER).execute_sql(query))
    obs["rl_types"] = [m.type for m in result.metadata]
    obs["rl_rows"] = [
        [c.isoformat() if hasattr(c, "isoformat") else c for c in row] for row in result.rows
    ]
    totals = call(
        "RL execute_sql totals",
        lambda: rl(MASTER).execute_sql("SELECT count(*) AS n, sum(amount) AS total FROM sales"),
    )
    obs["rl_totals"] = [list(r) for r in totals.rows]
    headers(read_key=READ)
    query_api = rakam_client.QueryApi(rc)
    answer = call(
        "RC execute",
        lambda: query_api.execute(
            execute=rakam_client.Execute(query="SELECT plan, count(*) AS n FROM sales GROUP BY plan ORDER BY plan")
        ),
    )
    obs["rc_metadata"] = [[m.name, m.type] for m in answer.metadata]
    obs["rc_rows"] = answer.result
    obs["rl_bad"] = refused_rl("RL bad query", lambda: rl(MASTER).execute_sql("SELECT * FROM nowhere"))
    obs["rc_bad"] = refused_rc(
        "RC bad query",
        lambda: query_api.execute(execute=rakam_client.Execute(query="DROP TABLE sales")),
    )
    return obs


SCENARIOS = {
    "sql": sql,
    "typed": typed,
    "seed": seed,
    "refused": refused,
    "users": users,
    "keys": keys,
    "strict": strict,
}
if SCENARIO not in SCENARIOS:
    fail("unknown scenario %r (one of %s)" % (SCENARIO, ", ".join(sorted(SCENARIOS))))
print(json.dumps(SCENARIOS[SCENARIO](), sort_keys=True))
