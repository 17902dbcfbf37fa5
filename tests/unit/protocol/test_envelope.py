"""`envelope.parse` (PROTOCOL §Transport, §Errors): one client frame in, a typed frame or a
`BadFrame` out. Python's JSON traps end as `bad_request`, never as another exception."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.errors import ProtocolError
from hubbub.ids import room_id
from hubbub.protocol.envelope import BadFrame, has_nul, parse
from hubbub.protocol.frames import (
    INBOUND_TYPES,
    Chat,
    Inbound,
    JoinRoom,
    Ping,
    Presence,
    Reaction,
    Typing,
)

# A valid frame of every inbound type (PROTOCOL §Client → server types).
VALID: dict[str, dict[str, Any]] = {
    "auth": {"token": "t.t.t"},
    "presence": {"status": "away", "userId": "u1", "username": "Ann"},
    "join_room": {"roomId": "r1", "since": 3},
    "leave_room": {"roomId": "r1"},
    "chat": {"roomId": "r1", "content": "hi", "clientMsgId": "c1", "replyTo": "m0"},
    "message_edit": {"roomId": "r1", "messageId": "m1", "content": "hi!"},
    "message_delete": {"roomId": "r1", "messageId": "m1"},
    "reaction": {"roomId": "r1", "messageId": "m1", "emoji": "👍", "op": "remove"},
    "typing": {"roomId": "r1", "isTyping": True},
    "history": {"roomId": "r1", "beforeSeq": 10, "limit": 20},
    "webrtc": {"kind": "offer", "to": "u2", "callId": "c1", "roomId": "r1",
               "sdp": {"type": "offer", "sdp": "v=0"}},
    "call_reject": {"callId": "c1", "reason": "busy"},
    "call_end": {"callId": "c1", "reason": "hangup"},
    "ping": {},
}

DEEP = 100_000


def encode(frame: dict[str, Any]) -> bytes:
    return json.dumps(frame, ensure_ascii=False).encode()


def bad(data: bytes | str) -> BadFrame:
    """Parse, expecting a BadFrame (and nothing else)."""
    with pytest.raises(BadFrame) as info:
        parse(data)
    return info.value


def tag(frame: Inbound) -> str:
    return str(type(frame).__struct_config__.tag)


def wire_room(data: bytes | str) -> str | int:
    """The `roomId` of a join_room frame, as parsed (before normalisation)."""
    frame = parse(data)
    assert isinstance(frame, JoinRoom)
    return frame.payload.room_id


# ---- valid frames -------------------------------------------------------------------


def test_every_client_type_of_the_protocol_is_an_inbound_type() -> None:
    assert set(VALID) <= INBOUND_TYPES


@pytest.mark.parametrize("type_", sorted(VALID))
def test_a_valid_frame_of_each_type_parses_to_its_struct(type_: str) -> None:
    frame = parse(encode({"type": type_, "id": "f1", "payload": VALID[type_]}))
    assert tag(frame) == type_
    assert frame.id == "f1"


def test_camel_case_wire_fields_become_snake_case_fields() -> None:
    frame = parse(encode({"type": "chat", "payload": VALID["chat"]}))
    assert isinstance(frame, Chat)
    assert (frame.payload.room_id, frame.payload.client_msg_id, frame.payload.reply_to) == (
        "r1", "c1", "m0")


def test_typing_flag_is_read() -> None:
    frame = parse(b'{"type":"typing","payload":{"roomId":"r1","isTyping":false}}')
    assert isinstance(frame, Typing) and frame.payload.is_typing is False


@pytest.mark.parametrize("type_", ["auth", "presence", "ping"])
def test_types_whose_payload_is_optional_parse_without_one(type_: str) -> None:
    assert tag(parse(encode({"type": type_}))) == type_


def test_presence_status_defaults_to_online() -> None:
    frame = parse(b'{"type":"presence"}')
    assert isinstance(frame, Presence) and frame.payload.status == "online"


def test_a_frame_without_id_has_no_id() -> None:
    assert parse(b'{"type":"ping"}').id is None


def test_a_64_char_id_is_accepted() -> None:
    assert parse(encode({"type": "ping", "id": "i" * 64})).id == "i" * 64


def test_unknown_payload_fields_are_ignored() -> None:
    frame = parse(encode({"type": "typing", "payload": {
        "roomId": "r1", "isTyping": True, "username": "Ann", "avatar": {"x": [1, 2]}}}))
    assert tag(frame) == "typing"


def test_unknown_envelope_fields_are_ignored() -> None:
    assert tag(parse(b'{"type":"ping","v":2,"meta":{"a":null}}')) == "ping"


def test_a_str_frame_parses_like_bytes() -> None:
    assert tag(parse('{"type":"ping","id":"é"}')) == "ping"


def test_an_escaped_surrogate_pair_is_a_valid_character() -> None:
    frame = parse(b'{"type":"reaction","payload":{"roomId":"r","messageId":"m",'
                  b'"emoji":"\\ud83d\\ude00"}}')
    assert isinstance(frame, Reaction) and frame.payload.emoji == "😀"


# ---- room ids ------------------------------------------------------------------------


def test_an_integer_room_id_is_normalised_to_its_decimal_string() -> None:
    assert room_id(wire_room(b'{"type":"join_room","payload":{"roomId":1}}')) == "1"


def test_a_string_room_id_is_kept_as_is() -> None:
    wire = wire_room(b'{"type":"join_room","payload":{"roomId":"Team-1_a.b:c"}}')
    assert room_id(wire) == "Team-1_a.b:c"


@pytest.mark.parametrize("value", ["", "with space", "a/b", "é", "x" * 129, "a\nb"])
def test_an_invalid_room_id_is_bad_request(value: str) -> None:
    wire = wire_room(encode({"type": "join_room", "payload": {"roomId": value}}))
    with pytest.raises(ProtocolError) as info:
        room_id(wire)
    assert info.value.code == "bad_request"


@pytest.mark.parametrize("value", ["true", "1.5", "null", "[1]", '{"a":1}'])
def test_a_room_id_of_another_json_type_is_bad_request(value: str) -> None:
    err = bad(f'{{"type":"join_room","id":"j","payload":{{"roomId":{value}}}}}')
    assert (err.code, err.frame_id) == ("bad_request", "j")


def test_a_huge_integer_room_id_is_bad_request_not_a_crash() -> None:
    wire = wire_room(b'{"type":"join_room","payload":{"roomId":' + b"9" * 4300 + b"}}")
    with pytest.raises(ProtocolError) as info:
        room_id(wire)
    assert info.value.code == "bad_request"


# ---- not a frame ----------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"hello", b"{", b'{"type":"ping"', b"{'type':'ping'}",
                                  b'{"type":"ping"} x', b'{"type":"ping",}'])
def test_not_json_is_bad_request_without_id(data: bytes) -> None:
    err = bad(data)
    assert (err.code, err.frame_id) == ("bad_request", None)


@pytest.mark.parametrize("data", [b"[]", b'[{"type":"ping"}]', b'"ping"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_bad_request(data: bytes) -> None:
    err = bad(data)
    assert (err.code, err.frame_id) == ("bad_request", None)


def test_a_missing_type_is_bad_request_with_the_frame_id() -> None:
    err = bad(b'{"id":"a1","payload":{}}')
    assert (err.code, err.frame_id) == ("bad_request", "a1")


@pytest.mark.parametrize("value", ["5", "null", "true", '["ping"]', '{"t":1}'])
def test_a_type_that_is_not_a_string_is_bad_request(value: str) -> None:
    err = bad(f'{{"type":{value},"id":"a1"}}')
    assert (err.code, err.frame_id) == ("bad_request", "a1")


def test_an_unknown_type_is_unknown_type_with_the_frame_id() -> None:
    err = bad(b'{"type":"teleport","id":"f1","payload":{"x":1}}')
    assert (err.code, err.frame_id) == ("unknown_type", "f1")


def test_an_unknown_type_without_id_is_unknown_type_without_id() -> None:
    err = bad(b'{"type":"teleport"}')
    assert (err.code, err.frame_id) == ("unknown_type", None)


def test_type_names_are_case_sensitive() -> None:
    assert bad(b'{"type":"PING"}').code == "unknown_type"


def test_a_server_only_type_from_a_client_is_unknown_type() -> None:
    assert bad(b'{"type":"welcome","id":"w"}').code == "unknown_type"


def test_a_missing_required_payload_is_bad_request_with_the_frame_id() -> None:
    err = bad(b'{"type":"join_room","id":"j1"}')
    assert (err.code, err.frame_id) == ("bad_request", "j1")


def test_a_missing_required_payload_field_is_bad_request_with_the_frame_id() -> None:
    err = bad(b'{"type":"join_room","id":"j1","payload":{}}')
    assert (err.code, err.frame_id) == ("bad_request", "j1")


@pytest.mark.parametrize("payload", ['"x"', "[]", "1"])
def test_a_payload_that_is_not_an_object_is_bad_request(payload: str) -> None:
    err = bad(f'{{"type":"ping","id":"p","payload":{payload}}}')
    assert (err.code, err.frame_id) == ("bad_request", "p")


@pytest.mark.parametrize("payload", [
    {"status": "offline"}, {"status": "invisible"}, {"status": 1}])
def test_a_presence_status_outside_online_away_busy_is_bad_request(
    payload: dict[str, Any],
) -> None:
    assert bad(encode({"type": "presence", "payload": payload})).code == "bad_request"


@pytest.mark.parametrize("payload", [{"roomId": "r", "limit": 0}, {"roomId": "r", "limit": 101},
                                     {"roomId": "r", "beforeSeq": -1}])
def test_history_bounds_are_checked(payload: dict[str, Any]) -> None:
    assert bad(encode({"type": "history", "payload": payload})).code == "bad_request"


def test_a_bad_frame_message_names_the_problem() -> None:
    assert "roomId" in bad(b'{"type":"join_room","payload":{}}').message


# ---- bad ids ---------------------------------------------------------------------------


def test_a_65_char_id_is_bad_request_without_id() -> None:
    err = bad(encode({"type": "ping", "id": "i" * 65}))
    assert (err.code, err.frame_id) == ("bad_request", None)


@pytest.mark.parametrize("value", ["7", '""', "null", "[]", '{"a":"b"}', "1.5"])
def test_an_id_that_is_not_a_1_to_64_char_string_is_bad_request_without_id(value: str) -> None:
    if value == "null":  # `"id": null` is the same as no id
        assert parse(b'{"type":"ping","id":null}').id is None
        return
    err = bad(f'{{"type":"ping","id":{value}}}')
    assert (err.code, err.frame_id) == ("bad_request", None)


def test_a_bad_id_on_an_unknown_type_is_not_echoed() -> None:
    err = bad(encode({"type": "teleport", "id": "i" * 65}))
    assert (err.code, err.frame_id) == ("unknown_type", None)


# ---- Python's JSON traps ---------------------------------------------------------------


def test_nesting_100k_deep_is_bad_request() -> None:
    err = bad(b"[" * DEEP + b"]" * DEEP)
    assert (err.code, err.frame_id) == ("bad_request", None)


def test_nesting_100k_deep_inside_a_payload_is_bad_request() -> None:
    nested = b'{"a":' * DEEP + b"1" + b"}" * DEEP
    assert bad(b'{"type":"webrtc","payload":{"kind":"offer","to":"u","candidate":'
               + nested + b"}}").code == "bad_request"


def test_nesting_100k_deep_in_an_ignored_field_is_bad_request() -> None:
    assert bad(b'{"type":"ping","junk":' + b"[" * DEEP + b"]" * DEEP + b"}").code == "bad_request"


def test_an_unclosed_100k_deep_nesting_is_bad_request() -> None:
    assert bad(b'{"type":"ping","junk":' + b"[" * DEEP).code == "bad_request"


@pytest.mark.parametrize("digits", [20, 400, 5000, 100_000])
def test_a_huge_int_in_a_seq_field_is_bad_request(digits: int) -> None:
    err = bad(b'{"type":"join_room","id":"j","payload":{"roomId":"r","since":'
              + b"9" * digits + b"}}")
    assert (err.code, err.frame_id) == ("bad_request", "j")


def test_a_seq_above_2_pow_53_is_bad_request() -> None:
    assert bad(encode({"type": "history", "payload": {"roomId": "r", "afterSeq": 2**53 + 1}}
                      )).code == "bad_request"


@pytest.mark.parametrize("digits", [5000, 100_000])
def test_a_huge_int_in_a_free_form_field_is_bad_request(digits: int) -> None:
    data = (b'{"type":"webrtc","payload":{"kind":"ice_candidate","to":"u","candidate":'
            b'{"sdpMLineIndex":' + b"9" * digits + b"}}}")
    assert bad(data).code == "bad_request"


@pytest.mark.parametrize("digits", [5000, 100_000])
def test_a_huge_int_in_an_ignored_field_is_skipped_not_converted(digits: int) -> None:
    # Python's int() would refuse (or take quadratic time on) these digits; an ignored
    # field is skipped unread, so the frame is valid.
    data = b'{"type":"ping","payload":{"extra":' + b"9" * digits + b'},"junk":' + b"9" * digits
    assert tag(parse(data + b"}")) == "ping"


def test_a_huge_int_as_user_id_is_bad_request() -> None:
    assert bad(b'{"type":"auth","payload":{"userId":' + b"9" * 5000 + b"}}").code == "bad_request"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
@pytest.mark.parametrize("where", ["seq", "free-form", "ignored"])
def test_nan_and_infinity_literals_are_bad_request(literal: bytes, where: str) -> None:
    data = {
        "seq": b'{"type":"history","payload":{"roomId":"r","beforeSeq":' + literal + b"}}",
        "free-form": (b'{"type":"webrtc","payload":{"kind":"offer","to":"u","candidate":{"a":'
                      + literal + b"}}}"),
        "ignored": b'{"type":"ping","junk":' + literal + b"}",
    }[where]
    assert bad(data).code == "bad_request"


def test_a_float_overflowing_to_infinity_in_a_seq_field_is_bad_request() -> None:
    assert bad(b'{"type":"history","payload":{"roomId":"r","beforeSeq":1e999}}'
               ).code == "bad_request"


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"\\udc00\\ud800", b"a\\ud83d"])
@pytest.mark.parametrize("field", ["id", "type", "userId", "content", "ignored"])
def test_a_lone_surrogate_escape_is_bad_request(escape: bytes, field: str) -> None:
    string = b'"' + escape + b'"'
    data = {
        "id": b'{"type":"ping","id":' + string + b"}",
        "type": b'{"type":' + string + b"}",
        "userId": b'{"type":"auth","payload":{"userId":' + string + b"}}",
        "content": b'{"type":"chat","payload":{"roomId":"r","content":' + string + b"}}",
        "ignored": b'{"type":"ping","junk":' + string + b"}",
    }[field]
    err = bad(data)
    assert (err.code, err.frame_id) == ("bad_request", None)


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"a\\ud83d", b"\\ude00b"])
@pytest.mark.parametrize(("field", "type_"), [("content", "chat"), ("clientMsgId", "chat"),
                                             ("username", "auth"), ("ignored", "ping")])
def test_a_lone_surrogate_escape_is_refused_with_the_frame_id(
    escape: bytes, field: str, type_: str
) -> None:
    """PROTOCOL §Transport: a frame with an `id` is answered with it. JSON.stringify writes
    a string cut inside a surrogate pair as such an escape: without the id, a browser's
    chat would wait for its ack forever, and be re-sent after every reconnect."""
    string = b'"' + escape + b'"'
    data = {
        "content": b'{"type":"chat","id":"f1","payload":{"roomId":"r","content":' + string
                   + b"}}",
        "clientMsgId": b'{"type":"chat","id":"f1","payload":{"roomId":"r","content":"hi",'
                       b'"clientMsgId":' + string + b"}}",
        "username": b'{"id":"f1","type":"auth","payload":{"userId":"u","username":' + string
                    + b"}}",
        "ignored": b'{"type":"ping","id":"f1","junk":[' + string + b"]}",
    }[field]
    err = bad(data)
    assert (err.code, err.frame_id, err.frame_type) == ("bad_request", "f1", type_)
    assert bad(data.decode()).frame_id == "f1"


def test_a_nan_is_refused_with_the_frame_id() -> None:
    err = bad(b'{"type":"history","id":"h","payload":{"roomId":"r","limit":NaN}}')
    assert (err.code, err.frame_id) == ("bad_request", "h")


def test_a_str_frame_holding_a_lone_surrogate_is_bad_request() -> None:
    assert bad('{"type":"chat","payload":{"roomId":"r","content":"\ud800"}}').code == (
        "bad_request")


# Each is invalid UTF-8: a stray continuation byte, a truncated sequence, an overlong
# encoding, a UTF-8-encoded surrogate (CESU-8), a code point above U+10FFFF, 0xFF.
INVALID_UTF8 = [b"\x80", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff"]


@pytest.mark.parametrize("raw", INVALID_UTF8)
@pytest.mark.parametrize("field", ["id", "content", "ignored", "key", "outside"])
def test_invalid_utf8_is_bad_request(raw: bytes, field: str) -> None:
    data = {
        "id": b'{"type":"ping","id":"a' + raw + b'"}',
        "content": b'{"type":"chat","payload":{"roomId":"r","content":"' + raw + b'"}}',
        "ignored": b'{"type":"ping","junk":"' + raw + b'"}',
        "key": b'{"type":"ping","' + raw + b'":1}',
        "outside": b'{"type":"ping"}' + raw,
    }[field]
    err = bad(data)
    assert (err.code, err.frame_id) == ("bad_request", None)


def test_a_frame_of_invalid_utf8_bytes_only_is_bad_request() -> None:
    assert bad(bytes(range(0x80, 0x100))).code == "bad_request"


def test_a_bad_frame_is_a_protocol_error() -> None:
    assert isinstance(bad(b"nope"), ProtocolError)


# ---- properties ------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats()
                | st.text(max_size=20) | st.sampled_from(["\ud800", "a\udc00", "é", "😀"]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELD_NAMES = sorted({key for body in VALID.values() for key in body}
                     | {"userId", "from", "sdp", "candidate", "afterSeq"})
payloads = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), json_values,
                           max_size=6)
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(INBOUND_TYPES)) | json_values},
    optional={"id": st.text(max_size=70) | json_values, "payload": payloads | json_values},
)


def check(data: bytes | str) -> None:
    try:
        frame = parse(data)
    except BadFrame as exc:
        assert exc.code in ("bad_request", "unknown_type")
        assert exc.frame_id is None or (isinstance(exc.frame_id, str)
                                        and 1 <= len(exc.frame_id) <= 64)
    else:
        assert tag(frame) in INBOUND_TYPES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_bad_frame(data: bytes) -> None:
    check(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_values_never_raise_anything_but_bad_frame(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)  # may hold NaN, Infinity, lone surrogates
    check(text)
    check(text.encode("utf-8", "surrogatepass"))
    check(json.dumps(value).encode())  # ascii: surrogates as \\u escapes


@settings(max_examples=500, deadline=None)
@given(envelopes)
def test_arbitrary_envelopes_never_raise_anything_but_bad_frame(frame: dict[str, Any]) -> None:
    check(json.dumps(frame).encode())
    check(json.dumps(frame, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.binary(min_size=1, max_size=40))
def test_a_valid_frame_with_bytes_spliced_in_never_raises_anything_but_bad_frame(
    type_: str, junk: bytes
) -> None:
    data = encode({"type": type_, "id": "f", "payload": VALID[type_]})
    for at in (0, len(data) // 2, len(data) - 1):
        check(data[:at] + junk + data[at:])


# ---- U+0000 is refused in every field ------------------------------------------------


@pytest.mark.parametrize("frame", [
    {"type": "auth", "payload": {"userId": "u1", "username": "A\x00"}},
    {"type": "chat", "payload": {"roomId": "r", "content": "hi", "replyTo": "\x00"}},
    {"type": "chat", "payload": {"roomId": "r", "content": "hi", "clientMsgId": "c\x00"}},
    {"type": "reaction", "payload": {"roomId": "r", "messageId": "m", "emoji": "\x00x"}},
    {"type": "webrtc", "payload": {"kind": "offer", "to": "b", "callId": "c\x00",
                                   "sdp": {"type": "offer", "sdp": "v=0"}}},
    {"type": "webrtc", "payload": {"kind": "ice_candidate", "to": "b", "callId": "c",
                                   "candidate": {"candidate": "x\x00"}}},
    {"type": "call_end", "payload": {"callId": "c", "reason": "bye\x00"}},
    {"type": "ping", "id": "p", "payload": {"extra": "\x00"}},
])
def test_u0000_anywhere_in_a_frame_is_a_bad_request_with_its_type_and_id(frame: Any) -> None:
    frame = {**frame, "id": "f1"}
    for data in (json.dumps(frame).encode(), json.dumps(frame)):
        err = bad(data)
        assert err.code == "bad_request" and "U+0000" in err.message
        assert (err.frame_id, err.frame_type) == ("f1", frame["type"])


def test_the_text_backslash_u0000_is_not_u0000() -> None:
    frame = parse(json.dumps({"type": "chat", "payload": {"roomId": "r",
                                                          "content": "\\u0000 in C"}}).encode())
    assert isinstance(frame, Chat) and frame.payload.content == "\\u0000 in C"


@given(st.text(alphabet=["\\", "u", "0", "\x00", "a", '"'], max_size=24))
@settings(max_examples=500, deadline=None)
def test_has_nul_agrees_with_the_decoded_text(text: str) -> None:
    data = json.dumps({"t": text})
    assert has_nul(data.encode()) == has_nul(data) == ("\x00" in text)


# ---- `"payload": null` is no payload (PROTOCOL: `payload: OBJECT?`) ----------------------


def test_a_null_payload_is_no_payload() -> None:
    frame = parse(b'{"type":"ping","id":"p","payload":null}')
    assert isinstance(frame, Ping) and frame.id == "p"
    assert isinstance(parse(b'{"type":"presence","payload":null}'), Presence)


def test_a_null_payload_where_one_is_required_is_still_a_bad_request() -> None:
    err = bad(b'{"type":"join_room","id":"j","payload":null}')
    assert err.code == "bad_request" and err.frame_id == "j" and "payload" in err.message
