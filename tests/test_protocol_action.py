"""Actions: golden canonical bytes (RFC 8785), the strict schema, and its properties."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.action import (
    MAX_DEPTH,
    Action,
    Operation,
    canonical_bytes,
    make_action,
    new_action_id,
    parse_action,
)
from protocol.envelope import Envelope, load_envelope, parse_envelope
from protocol.errors import ActionError

GOLDEN = Path(__file__).parent / "data" / "protocol"
VECTORS = sorted(p.stem for p in GOLDEN.glob("action_*.bin"))


def valid_raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "version": 1,
        "id": "01JD3M8Q7K2Y5V0C4T6N9P1R3S",
        "name": "xz backdoor sweep",
        "description": "",
        "target": "env=prod and os=linux",
        "valid_from": 1764400000,
        "expire_after": 1764400300,
        "operations": [
            {"module": "file", "params": {"paths": ["/usr/lib"], "name": ["^liblzma\\.so"]}}
        ],
    }
    raw.update(changes)
    return raw


def with_params(params: Any) -> dict[str, Any]:
    return valid_raw(operations=[{"module": "file", "params": params}])


def rejects(raw: Any, message: str) -> None:
    with pytest.raises(ActionError) as caught:
        parse_action(raw)
    assert str(caught.value) == message


# --- an independent RFC 8785 serializer, written from the RFC text, to cross-check -------------


def _jcs_string(text: str) -> str:
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
    short["\r"] = "\\r"
    out = []
    for ch in text:
        if ch in short:
            out.append(short[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")  # RFC 8785 §3.2.2.2: lowercase hex
        else:
            out.append(ch)  # everything else verbatim, '/' and non-ASCII included
    return '"' + "".join(out) + '"'


def jcs_reference(value: Any) -> bytes:
    def ser(v: Any) -> str:
        if v is None:
            return "null"
        if v is True:
            return "true"
        if v is False:
            return "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return _jcs_string(v)
        if isinstance(v, list):
            return "[" + ",".join(ser(x) for x in v) + "]"
        assert isinstance(v, dict)
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))  # §3.2.3: UTF-16 code units
        return "{" + ",".join(f"{_jcs_string(k)}:{ser(v[k])}" for k in keys) + "}"

    return ser(value).encode("utf-8")


# --- golden vectors ------------------------------------------------------------------------------


def test_golden_vectors_exist() -> None:
    names = {"design_example", "unicode", "escapes", "nested", "empty_description"}
    assert {f"action_{name}" for name in names} <= set(VECTORS)


@pytest.mark.parametrize("name", VECTORS)
def test_golden_canonical_bytes(name: str) -> None:
    raw = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    expected = (GOLDEN / f"{name}.bin").read_bytes()
    action = parse_action(raw)
    assert action.canonical == expected
    assert canonical_bytes(raw) == expected
    assert jcs_reference(raw) == expected
    # the bytes are UTF-8 JSON that reads back to the same action
    assert parse_action(json.loads(expected.decode("utf-8"))) == action


def test_golden_design_example_literal() -> None:
    expected = (
        b'{"description":"","expire_after":1764400300,"id":"01JD3M8Q7K2Y5V0C4T6N9P1R3S",'
        b'"name":"xz backdoor sweep","operations":[{"module":"file","params":'
        b'{"name":["^liblzma\\\\.so"],"paths":["/usr/lib"]}}],"target":"env=prod and os=linux",'
        b'"valid_from":1764400000,"version":1}'
    )
    assert parse_action(valid_raw()).canonical == expected
    assert (GOLDEN / "action_design_example.bin").read_bytes() == expected


def test_empty_description_is_signed_as_an_empty_string() -> None:
    data = (GOLDEN / "action_empty_description.bin").read_bytes()
    assert data.startswith(b'{"description":"",')


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("\x1f", b'"\\u001f"'),  # lowercase hex
        ("\x0b\x1a\x00", b'"\\u000b\\u001a\\u0000"'),
        ("\b\f\n\r\t", b'"\\b\\f\\n\\r\\t"'),  # the two-character forms
        ('"\\', b'"\\"\\\\"'),
        ("/etc/", b'"/etc/"'),  # '/' is not escaped
        ("\x7f", b'"\x7f"'),  # DEL is not a control character for JSON
        ("é€😀", '"é€😀"'.encode()),  # non-ASCII verbatim in UTF-8
        ("\u2028\u2029", '"\u2028\u2029"'.encode()),
    ],
)
def test_string_escaping_is_minimal(text: str, encoded: bytes) -> None:
    assert canonical_bytes(text) == encoded == jcs_reference(text)
    action = parse_action(valid_raw(description=text))
    assert b'"description":' + encoded + b"," in action.canonical


def test_key_order_in_params() -> None:
    params = {"b": 1, "a": 2, "A": 3, "_": 4, "-": 5, "0": 6, "aa": 7, "a-b": 8, "Z": 9}
    data = parse_action(with_params(params)).canonical
    assert b'"params":{"-":5,"0":6,"A":3,"Z":9,"_":4,"a":2,"a-b":8,"aa":7,"b":1}' in data


def test_rfc8785_string_vector() -> None:
    # RFC 8785 §3.2.2 example, without its float array (floats are forbidden in actions).
    source = r'{"literals": [null, true, false], "string": "\u20ac$\u000F\u000aA'
    source += r"'\u0042\u0022\u005c\\\"\/" + '"}'
    expected = '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    assert canonical_bytes(json.loads(source)) == expected.encode()


def test_rfc8785_key_sorting_vector() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units, so U+1F600 comes before U+FB33.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign",'
        '"😀":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical_bytes(value) == expected.encode() == jcs_reference(value)


def test_integers_at_the_limits() -> None:
    data = parse_action(with_params({"lo": -(2**53), "hi": 2**53, "zero": 0})).canonical
    assert b'{"hi":9007199254740992,"lo":-9007199254740992,"zero":0}' in data


def test_every_field_is_in_the_signed_bytes() -> None:
    data = json.loads(parse_action(valid_raw()).canonical)
    assert set(data) == set(valid_raw())


# --- strict validation ---------------------------------------------------------------------------


def test_valid_action_parses() -> None:
    action = parse_action(valid_raw())
    assert action == Action(
        id="01JD3M8Q7K2Y5V0C4T6N9P1R3S",
        name="xz backdoor sweep",
        target="env=prod and os=linux",
        valid_from=1764400000,
        expire_after=1764400300,
        operations=(Operation("file", {"paths": ["/usr/lib"], "name": ["^liblzma\\.so"]}),),
    )
    assert action.modules == ["file"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "action: expected a JSON object"),
        (None, "action: expected a JSON object"),
        ("{}", "action: expected a JSON object"),
        (valid_raw(extra=1), "action: unknown field 'extra'"),
        (valid_raw(signatures=[]), "action: unknown field 'signatures'"),
        ({**valid_raw(), 7: "x"}, "action: unknown field 7"),  # type: ignore[misc]
    ],
)
def test_shape(raw: Any, message: str) -> None:
    rejects(raw, message)


@pytest.mark.parametrize(
    "field",
    ["version", "id", "name", "description", "target", "valid_from", "expire_after", "operations"],
)
def test_missing_field(field: str) -> None:
    raw = valid_raw()
    del raw[field]
    rejects(raw, f"action: missing field {field!r}")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("version", "1", "action.version: expected an integer, got string"),
        ("version", True, "action.version: expected an integer, got boolean"),
        ("version", 1.0, "action.version: expected an integer, got float"),
        ("valid_from", False, "action.valid_from: expected an integer, got boolean"),
        ("valid_from", 1764400000.0, "action.valid_from: expected an integer, got float"),
        ("expire_after", None, "action.expire_after: expected an integer, got null"),
        ("expire_after", 1.5, "action.expire_after: expected an integer, got float"),
        ("id", 12345678, "action.id: expected a string, got integer"),
        ("name", ["x"], "action.name: expected a string, got array"),
        ("description", None, "action.description: expected a string, got null"),
        ("target", {"env": "prod"}, "action.target: expected a string, got object"),
        ("operations", {"module": "file"}, "action.operations: expected an array, got object"),
        ("operations", "file", "action.operations: expected an array, got string"),
    ],
)
def test_wrong_types(field: str, value: Any, message: str) -> None:
    rejects(valid_raw(**{field: value}), message)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("valid_from", 2**53 + 1, "action.valid_from: integer outside ±2^53"),
        ("expire_after", -(2**53) - 1, "action.expire_after: integer outside ±2^53"),
        ("version", 10**30, "action.version: integer outside ±2^53"),
    ],
)
def test_integers_beyond_2_53(field: str, value: int, message: str) -> None:
    rejects(valid_raw(**{field: value}), message)


@pytest.mark.parametrize(
    ("field", "limit"), [("id", 64), ("name", 256), ("description", 4096), ("target", 1024)]
)
def test_oversize_strings(field: str, limit: int) -> None:
    parse_action(valid_raw(**{field: "a" * limit}))
    rejects(
        valid_raw(**{field: "a" * (limit + 1)}), f"action.{field}: longer than {limit} characters"
    )


def test_oversize_param_string() -> None:
    parse_action(with_params({"s": "x" * 65536}))
    rejects(
        with_params({"s": ["x" * 65537]}),
        "action.operations[0].params.s[0]: string longer than 65536 characters",
    )


@pytest.mark.parametrize(
    "bad_id",
    [
        "",
        "short",
        "1234567",
        "has space1",
        "under_score",
        "dot.ted-id",
        "ünïcode-id",
        "a" * 65,
        "abcdefgh\n",
        "\nabcdefgh",
    ],
)
def test_bad_ids(bad_id: str) -> None:
    message = (
        "action.id: longer than 64 characters"
        if len(bad_id) > 64
        else "action.id: expected 8-64 characters from [A-Za-z0-9-]"
    )
    rejects(valid_raw(id=bad_id), message)


@pytest.mark.parametrize(
    "good_id", ["abcdefgh", "A-1-b-2-", "-" * 8, "Z" * 64, "01JD3M8Q7K2Y5V0C4T6N9P1R3S"]
)
def test_good_ids(good_id: str) -> None:
    assert parse_action(valid_raw(id=good_id)).id == good_id


def test_new_action_ids_are_sortable_ulids() -> None:
    first, second = new_action_id(), new_action_id()
    assert len(first) == 26 and first[:9] <= second[:9]


@pytest.mark.parametrize("count", [0, 17, 100])
def test_operation_count(count: int) -> None:
    ops = [{"module": "file", "params": {}}] * count
    rejects(valid_raw(operations=ops), f"action.operations: expected 1-16 entries, got {count}")


def test_sixteen_operations_are_fine() -> None:
    ops = [{"module": f"m{i}", "params": {}} for i in range(16)]
    assert len(parse_action(valid_raw(operations=ops)).operations) == 16


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ("file", "action.operations[0]: expected an object"),
        (None, "action.operations[0]: expected an object"),
        ({"module": "file"}, "action.operations[0]: missing field 'params'"),
        ({"params": {}}, "action.operations[0]: missing field 'module'"),
        ({"module": "file", "params": {}, "x": 1}, "action.operations[0]: unknown field 'x'"),
        ({"module": "", "params": {}}, "action.operations[0].module: expected a module name"),
        ({"module": "a b", "params": {}}, "action.operations[0].module: expected a module name"),
        ({"module": 3, "params": {}}, "action.operations[0].module: expected a module name"),
        ({"module": "m" * 65, "params": {}}, "action.operations[0].module: expected a module name"),
        ({"module": "file", "params": []}, "action.operations[0].params: expected an object"),
        ({"module": "file", "params": None}, "action.operations[0].params: expected an object"),
    ],
)
def test_bad_operations(op: Any, message: str) -> None:
    rejects(valid_raw(operations=[op]), message)


def test_error_names_the_operation_index() -> None:
    ops = [{"module": "file", "params": {}}, {"module": "file", "params": {"x": 1.5}}]
    rejects(
        valid_raw(operations=ops),
        "action.operations[1].params.x: floats are not allowed in actions",
    )


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"x": 1.0}, "params.x"),
        ({"x": [1, 2.5]}, "params.x[1]"),
        ({"x": {"y": {"z": [0.0]}}}, "params.x.y.z[0]"),
        ({"x": float("nan")}, "params.x"),
        ({"x": float("inf")}, "params.x"),
        ({"x": -0.0}, "params.x"),
    ],
)
def test_floats_anywhere_in_params(params: Any, where: str) -> None:
    rejects(with_params(params), f"action.operations[0].{where}: floats are not allowed in actions")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": 2**53 + 1}, "action.operations[0].params.n: integer outside ±2^53"),
        ({"n": [-(2**64)]}, "action.operations[0].params.n[0]: integer outside ±2^53"),
    ],
)
def test_big_ints_in_params(params: Any, message: str) -> None:
    rejects(with_params(params), message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (valid_raw(name="a\ud800b"), "action.name: string is not valid Unicode"),
        (valid_raw(description="\udfff"), "action.description: string is not valid Unicode"),
        (valid_raw(target="x\udc80"), "action.target: string is not valid Unicode"),
        (
            with_params({"p": ["ok", "\ud83d"]}),
            "action.operations[0].params.p[1]: string is not valid Unicode",
        ),
    ],
)
def test_lone_surrogates(raw: Any, message: str) -> None:
    rejects(raw, message)


def test_surrogate_pair_from_json_escape_is_fine() -> None:
    raw = json.loads(json.dumps(valid_raw(name="\U0001f600")))
    assert parse_action(raw).name == "😀"


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def test_nesting_limit() -> None:
    parse_action(with_params({"x": nested(MAX_DEPTH - 1)}))
    with pytest.raises(ActionError, match=f"nested deeper than {MAX_DEPTH}$"):
        parse_action(with_params({"x": nested(MAX_DEPTH)}))


def test_very_deep_nesting_is_an_action_error_not_a_recursion_error() -> None:
    with pytest.raises(ActionError, match="nested deeper than 8"):
        parse_action(with_params({"x": nested(5000)}))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"a b": 1}, "action.operations[0].params: key 'a b' is not a [A-Za-z0-9_-] name"),
        ({"": 1}, "action.operations[0].params: key '' is not a [A-Za-z0-9_-] name"),
        ({"é": 1}, "action.operations[0].params: key 'é' is not a [A-Za-z0-9_-] name"),
        (
            {"k" * 65: 1},
            f"action.operations[0].params: key {'k' * 65!r} is not a [A-Za-z0-9_-] name",
        ),
        ({"x": {"a.b": 1}}, "action.operations[0].params.x: key 'a.b' is not a [A-Za-z0-9_-] name"),
        ({1: 1}, "action.operations[0].params: key 1 is not a [A-Za-z0-9_-] name"),
        ({"ok\n": 1}, "action.operations[0].params: key 'ok\\n' is not a [A-Za-z0-9_-] name"),
    ],
)
def test_bad_param_keys(params: Any, message: str) -> None:
    rejects(with_params(params), message)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"x": (1, 2)}, "action.operations[0].params.x: tuple is not a JSON value"),
        ({"x": {1, 2}}, "action.operations[0].params.x: set is not a JSON value"),
        ({"x": b"raw"}, "action.operations[0].params.x: bytes is not a JSON value"),
    ],
)
def test_non_json_values(params: Any, message: str) -> None:
    rejects(with_params(params), message)


def test_make_action_builds_a_valid_fresh_action() -> None:
    action = make_action("sweep", "all", [Operation("file", {"paths": ["/"]})], now=1000)
    assert (action.valid_from, action.expire_after, action.description) == (1000, 1300, "")
    assert parse_action(action.to_dict()) == action
    with pytest.raises(ActionError, match="floats are not allowed"):
        make_action("sweep", "all", [Operation("file", {"x": 0.5})], now=1000)


# --- envelopes -----------------------------------------------------------------------------------


def envelope_raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"action": valid_raw(), "signatures": []}
    raw.update(changes)
    return raw


def rejects_envelope(raw: Any, message: str) -> None:
    with pytest.raises(ActionError) as caught:
        parse_envelope(raw)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "envelope: expected a JSON object"),
        (envelope_raw(extra=1), "envelope: unknown field 'extra'"),
        ({**envelope_raw(), 1: 2, "z": 3}, "envelope: unknown field 1"),  # type: ignore[misc]
        ({"action": valid_raw()}, "envelope: needs 'action' and 'signatures'"),
        ({"signatures": []}, "envelope: needs 'action' and 'signatures'"),
        (envelope_raw(signatures="sig"), "envelope.signatures: expected an array of at most 16"),
        (
            envelope_raw(signatures=["s"] * 17),
            "envelope.signatures: expected an array of at most 16",
        ),
        (
            envelope_raw(signatures=[1]),
            "envelope.signatures[0]: expected an armored signature string",
        ),
        (
            envelope_raw(signatures=["ok", "x" * 16385]),
            "envelope.signatures[1]: expected an armored signature string",
        ),
        (
            envelope_raw(signatures=["-----BEGIN PGP SIGNATURE-----\ud800"]),
            "envelope.signatures[0]: expected an armored signature string",
        ),
        (envelope_raw(action=[]), "action: expected a JSON object"),
        (
            envelope_raw(action=valid_raw(id="bad")),
            "action.id: expected 8-64 characters from [A-Za-z0-9-]",
        ),
    ],
)
def test_bad_envelopes(raw: Any, message: str) -> None:
    rejects_envelope(raw, message)


def test_envelope_round_trip_and_files(tmp_path: Path) -> None:
    envelope = parse_envelope(
        envelope_raw(action=valid_raw(name="Grüße 😀"), signatures=["a", "b"])
    )
    assert envelope.signatures == ("a", "b")
    assert parse_envelope(envelope.to_dict()) == envelope
    assert envelope.with_signature("c").signatures == ("a", "b", "c")
    path = tmp_path / "env.json"
    envelope.save(path)
    assert load_envelope(path) == envelope


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not a JSON envelope"),
        (b"\xff\xfe", "not a JSON envelope"),
        (b'{"signatures": [], "action": ' + b"1" * 5000 + b"}", "not a JSON envelope"),
        (b"[" * 100000, "not a JSON envelope"),
        (b'{"signatures": []}', "envelope: needs 'action' and 'signatures'"),
    ],
    ids=["syntax", "not-utf8", "huge-int", "deep", "schema"],
)
def test_load_envelope_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "env.json"
    path.write_bytes(content)
    with pytest.raises(ActionError, match=message):
        load_envelope(path)


def test_load_envelope_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="No such file"):
        load_envelope(tmp_path / "absent.json")


# --- properties ----------------------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
KEYS = st.text(_ALNUM + "_-", min_size=1, max_size=12)
SAFE_INTS = st.integers(min_value=-(2**53), max_value=2**53)
TEXT = st.text(max_size=40)  # no surrogates by default
PARAM_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INTS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=8,
)
OPERATIONS = st.builds(
    lambda module, params: {"module": module, "params": params},
    KEYS,
    st.dictionaries(KEYS, PARAM_VALUES, max_size=4),
)
VALID_ACTIONS = st.fixed_dictionaries(
    {
        "version": st.integers(min_value=0, max_value=5),
        "id": st.text(_ALNUM + "-", min_size=8, max_size=64),
        "name": st.text(max_size=50),
        "description": st.text(max_size=80),
        "target": st.text(max_size=50),
        "valid_from": SAFE_INTS,
        "expire_after": SAFE_INTS,
        "operations": st.lists(OPERATIONS, min_size=1, max_size=4),
    }
)
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=20)  # surrogates too
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | ANY_TEXT
    | st.sampled_from(["file", "", "version", "action", "signatures", "operations", "params"]),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(ANY_TEXT | st.sampled_from(list(valid_raw())), inner, max_size=5)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(VALID_ACTIONS)
def test_valid_actions_round_trip(raw: dict[str, Any]) -> None:
    action = parse_action(raw)
    data = action.canonical
    assert data == canonical_bytes(raw) == jcs_reference(raw)
    again = parse_action(json.loads(data.decode("utf-8")))
    assert again == action
    assert parse_action(action.to_dict()).canonical == data


@st.composite
def mutated_actions(draw: st.DrawFn) -> Any:
    """A valid action with one value somewhere replaced by something arbitrary."""
    raw = copy.deepcopy(draw(VALID_ACTIONS))
    node: Any = raw
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        containers = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not containers:
            break
        _, node = draw(st.sampled_from(containers))
    if isinstance(node, dict):
        if draw(st.booleans()) and node:
            node[draw(st.sampled_from(sorted(node)))] = draw(JSONISH)
        else:
            node[draw(ANY_TEXT)] = draw(JSONISH)
    elif node:
        node[draw(st.integers(min_value=0, max_value=len(node) - 1))] = draw(JSONISH)
    return raw


@settings(max_examples=300, deadline=None)
@given(JSONISH | mutated_actions())
def test_anything_is_an_action_or_an_action_error(raw: Any) -> None:
    try:
        action = parse_action(raw)
    except ActionError:
        return
    assert isinstance(action, Action)
    action.canonical.decode("utf-8")  # whatever parses can be signed


@settings(max_examples=300, deadline=None)
@given(
    JSONISH
    | st.fixed_dictionaries(
        {
            "action": mutated_actions() | JSONISH,
            "signatures": st.lists(ANY_TEXT, max_size=3) | JSONISH,
        }
    )
)
def test_anything_is_an_envelope_or_an_action_error(raw: Any) -> None:
    try:
        envelope = parse_envelope(raw)
    except ActionError:
        return
    assert isinstance(envelope, Envelope)
    for signature in envelope.signatures:
        signature.encode("utf-8")
