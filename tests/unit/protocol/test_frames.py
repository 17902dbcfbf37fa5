"""Outbound encoding (PROTOCOL §Transport): camelCase on the wire, optional fields omitted."""

import json

from hubbub.protocol.frames import ErrorPayload, Member, PresenceEvent, TypingEvent, encode


def test_an_error_frame_has_code_message_and_id() -> None:
    data = encode("error", ErrorPayload(code="not_in_room", message="not in room 'r'"), "f1")
    assert json.loads(data) == {"type": "error", "id": "f1",
                                "payload": {"code": "not_in_room", "message": "not in room 'r'"}}


def test_rate_limited_error_carries_retry_after_ms_in_camel_case() -> None:
    data = encode("error", ErrorPayload(code="rate_limited", message="slow down",
                                        retry_after_ms=250))
    assert json.loads(data)["payload"]["retryAfterMs"] == 250


def test_a_frame_without_id_has_no_id_key() -> None:
    assert "id" not in json.loads(encode("error", ErrorPayload(code="internal", message="x")))


def test_payload_fields_are_camel_case_on_the_wire() -> None:
    data = encode("typing", TypingEvent(room_id="r1", user_id="u1", username="Ann",
                                        is_typing=False))
    assert json.loads(data) == {"type": "typing", "payload": {
        "roomId": "r1", "userId": "u1", "username": "Ann", "isTyping": False}}


def test_presence_event_carries_last_seen_as_integer_milliseconds() -> None:
    data = encode("presence", PresenceEvent(user_id="u1", username="Ann", status="offline",
                                            last_seen=1_700_000_000_123))
    assert json.loads(data)["payload"]["lastSeen"] == 1_700_000_000_123


def test_a_member_lists_user_id_username_and_status() -> None:
    assert json.loads(encode("x", Member(user_id="u", username="U", status="away")))[
        "payload"] == {"userId": "u", "username": "U", "status": "away"}


def test_non_ascii_text_is_sent_as_utf8() -> None:
    data = encode("typing", TypingEvent(room_id="r", user_id="u", username="Zoë 😀",
                                        is_typing=True))
    assert "Zoë 😀".encode() in data
