# A test SMTP server (aiosmtpd) that appends the decoded text of each
# message it accepts to a file, separated by a line of `=====`:
# `python3 smtp_text_sink.py PORT OUT`. Used by the portal test to follow
# the answer link a notice email carries.
import email, email.policy, sys, time
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]


class Sink:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = [p.get_content() for p in msg.walk() if p.get_content_type() == "text/plain"]
        with open(out, "a", encoding="utf-8") as f:
            f.write("To: " + str(msg["To"]) + "\n" + "\n".join(parts) + "\n=====\n")
        return "250 OK"


c = Controller(Sink(), hostname="127.0.0.1", port=port)
c.start()
while True:
    time.sleep(3600)
