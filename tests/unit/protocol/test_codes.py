"""Error and close codes (PROTOCOL §Errors, §Close codes): the wire values are the contract."""

from hubbub.protocol.codes import CloseCode, ErrorCode


def test_error_codes_are_exactly_those_of_the_protocol() -> None:
    assert {c.value for c in ErrorCode} == {
        "bad_request", "unknown_type", "unauthorized", "forbidden", "not_found",
        "not_in_room", "rate_limited", "too_large", "conflict", "internal"}


def test_close_codes_have_the_protocol_values() -> None:
    assert (CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.POLICY, CloseCode.TOO_LARGE,
            CloseCode.INTERNAL, CloseCode.OVERLOADED, CloseCode.AUTH_FAILED,
            CloseCode.REPLACED, CloseCode.TOO_MANY_BAD_FRAMES) == (
        1000, 1001, 1008, 1009, 1011, 1013, 4001, 4002, 4008)


def test_error_codes_are_plain_strings_on_the_wire() -> None:
    assert isinstance(ErrorCode.RATE_LIMITED, str)
    assert f"{ErrorCode.NOT_IN_ROOM}" == "not_in_room"
    assert str(ErrorCode.RATE_LIMITED) == "rate_limited"
