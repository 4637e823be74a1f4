"""Serve ``tests.twilio_fake.FakeTwilio`` from its own process, driven through stdin.

Prints the base URL on the first line. Then each line ``stats`` on stdin is answered
with the server's request counts as one JSON line, and each line ``received <number>``
with the messages accepted for that number as one JSON line (a list of ``[body,
received_at]``, the moment of acceptance in seconds since the epoch, from this
machine's clock); end of file on stdin stops the server (after a last JSON line of
counts). Used by
:class:`bench.common.FakeTwilioProcess`; runnable by hand for experiments::

    .venv/bin/python -m bench.fake_twilio_server
"""

from __future__ import annotations

import json
import sys

from tests.twilio_fake import FakeTwilio


def main() -> None:
    """Start the fake, announce its URL, answer ``stats`` requests until stdin closes."""
    with FakeTwilio() as fake:
        print(fake.base_url, flush=True)
        for line in sys.stdin:  # ends when the parent closes our stdin (or dies)
            command, _, argument = line.strip().partition(" ")
            if command == "stats":
                print(json.dumps(fake.stats), flush=True)
            elif command == "received":
                received = [
                    [m["body"], m["received_at"].timestamp()]
                    for m in fake.messages
                    if m["to"] == argument
                ]
                print(json.dumps(received), flush=True)
        stats = fake.stats
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
