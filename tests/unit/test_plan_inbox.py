"""The plan inbox tells a forwarder's repeat by the source position of what it forwards."""

from __future__ import annotations

from streams.lockdown import forwarded_from, inbox_record


def test_commands_and_acks_carry_their_source_partition_and_offset() -> None:
    rec = inbox_record("ack", ("p-plan-acks", 0, 41, 1_795_000_000_000), b'{"x": 1}')
    assert forwarded_from(rec) == ("~src:p-plan-acks:0", 41)
    rec = inbox_record("cmd", ("p-plan-commands", 2, 7, 0), b"not json at all")
    assert forwarded_from(rec) == ("~src:p-plan-commands:2", 7)


def test_triggers_and_unreadable_records_are_not_deduplicated_by_source() -> None:
    rec = inbox_record("trigger", ("alerts", -1, -1, 0), alert={"rule": "penetration"})
    assert forwarded_from(rec) == (None, -1)
    assert forwarded_from(b"\xff not an inbox record") == (None, -1)
    assert forwarded_from(b'{"k": "ack"}') == (None, -1)
