# A test SMTP server (aiosmtpd) that appends each message's Message-ID to a
# file, one per line, after waiting DELAY seconds (default 0) before it
# answers: `python3 smtp_sink.py PORT OUT [DELAY]`. Used by the notifier
# and reliability tests to count deliveries and recognise duplicates.
import asyncio, sys, time
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0


class Sink:
    async def handle_DATA(self, server, session, envelope):
        if delay:
            await asyncio.sleep(delay)
        mid = b""
        for line in envelope.original_content.splitlines():
            if line.lower().startswith(b"message-id:"):
                mid = line.split(b":", 1)[1].strip()
                break
        with open(out, "ab") as f:
            f.write(mid + b"\n")
        return "250 OK"


c = Controller(Sink(), hostname="127.0.0.1", port=port)
c.start()
while True:
    time.sleep(3600)
