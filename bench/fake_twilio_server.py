"""Serve ``tests.twilio_fake.FakeTwilio`` from its own process, driven through stdin.

Prints the base URL on the first line. Then each line ``stats`` on stdin is answered
with the server's request counts as one JSON line; end of file on stdin stops the
server (after a last JSON line of counts). Used by
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
            if line.strip() == "stats":
                print(json.dumps(fake.stats), flush=True)
        stats = fake.stats
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
