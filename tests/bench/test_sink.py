"""The harness's SMTP sink, in its own process as the benchmark runs it."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from bench.procs import Sink

pytestmark = pytest.mark.e2e

MESSAGE = b"Subject: hi\r\n\r\nline one\r\n..a stuffed dot\r\n"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    process = Sink(tmp_path, delay=0.0)
    yield process
    process.stop()


async def test_a_client_without_pipelining_is_answered_and_each_recipient_logged(
    sink: Sink,
) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port) as client:
        assert client.supports_extension("pipelining")
        for recipient in ("a@example.com", "b@example.com"):
            await client.sendmail("from@example.com", [recipient], MESSAGE)
        await client.sendmail("from@example.com", ["c@example.com", "d@example.com"], MESSAGE)

    assert await sink.wait_for({f"{name}@example.com" for name in "abcd"}, timeout=5)
    assert sorted(sink.received.values()) == [1, 1, 1, 1]


async def test_pipelined_commands_get_their_replies_in_order(sink: Sink) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sink.port)
    assert (await reader.readline()).startswith(b"220 ")
    writer.write(b"EHLO me\r\n")
    ehlo = [await reader.readline()]
    while ehlo[-1][3:4] == b"-":
        ehlo.append(await reader.readline())
    # Two mails in one write each (RFC 2920), the second with an empty body.
    writer.write(b"MAIL FROM:<f@example.com>\r\nRCPT TO:<p@example.com>\r\nDATA\r\n")
    writer.write(MESSAGE + b".\r\n")
    writer.write(b"MAIL FROM:<f@example.com>\r\nRCPT TO:<q@example.com>\r\nDATA\r\n.\r\n")
    writer.write(b"DATA\r\nQUIT\r\n")
    replies = [(await reader.readline())[:3] for _ in range(10)]
    writer.close()

    assert b"250 SMTPUTF8\r\n" in ehlo
    assert replies == [b"250", b"250", b"354", b"250"] * 2 + [b"503", b"221"]
    assert await sink.wait_for({"p@example.com", "q@example.com"}, timeout=5)


async def test_a_failure_rate_refuses_mail_with_a_transient_reply(tmp_path: Path) -> None:
    sink = Sink(tmp_path, delay=0.0, failure_rate=1.0)
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port) as client:
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                await client.sendmail("from@example.com", ["r@example.com"], MESSAGE)
        assert refused.value.code == 451
        await asyncio.sleep(0.1)  # Longer than the sink's flush interval.
        assert sink.poll() == 0
    finally:
        sink.stop()


async def test_a_delay_holds_each_mails_250_back_and_the_mail_still_arrives(
    tmp_path: Path,
) -> None:
    sink = Sink(tmp_path, delay=0.3)
    try:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port) as client:
            began = asyncio.get_running_loop().time()
            await client.sendmail("from@example.com", ["slow@example.com"], MESSAGE)
            waited = asyncio.get_running_loop().time() - began
            await client.noop()  # Still answering after a delayed 250.
        assert waited >= 0.3
        assert await sink.wait_for({"slow@example.com"}, timeout=5)
    finally:
        sink.stop()
