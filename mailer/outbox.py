"""Django's mail as jobs: the ``MAILERS["default"]`` backend that queues instead of sending.

``send_mail``, ``EmailMessage.send``, ``mail_admins`` and the password-reset
view all end in ``send_messages`` here. Each message is rendered to its final
bytes now, in the caller's thread, and queued as one ``send_stored_message``
job with the caller's transaction (``enqueue_with_transaction``): in it for
the ledger, after its commit for any other ``TASKS`` backend. The call
returns as soon as the job is written; the runner sends it through the
pooled SMTP transport, with its retries.

The job holds the message, not a Python object: the RFC 5322 bytes (base64,
so attachments and 8-bit parts come through unchanged) and the envelope.
Every attempt sends those same bytes, so a retry is the same message with the
same Message-ID, whichever worker sends it.
"""

import email.policy
from base64 import b64encode
from collections.abc import Sequence
from copy import copy
from email.headerregistry import AddressHeader
from email.utils import make_msgid
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.encoding import force_str

from background.enqueue import enqueue_with_transaction

from .addresses import ascii_domain
from .messages import envelope_sender
from .tasks import send_stored_message

# Django's policy for SMTP (CRLF line endings), but with 7-bit transfer
# encodings: text parts become quoted-printable instead of raw UTF-8, which
# RFC 6152 allows only to servers offering 8BITMIME. Stored bytes must suit
# whichever server the relay is when they are sent.
STORED_POLICY = email.policy.SMTP.clone(cte_type="7bit")


class OutboxBackend(BaseEmailBackend):
    """Queues each message as a ``mailer.tasks.send_stored_message`` job; sends nothing itself.

    Raises what Django's SMTP backend raises in the caller (ValueError for an
    address that cannot be parsed or a header with a line break) and any
    database error writing the job; what only sending can tell (a refused or
    undeliverable recipient, a server that is down) is the job's to find out.
    Call it from sync code; async code uses ``sync_to_async``, as for any ORM
    write (Django 6.1's mail API has no async variant).
    """

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        # Every message is checked and rendered before any is queued: one that
        # Django would refuse stops send_mass_mail before it queued the rest.
        # No transaction of its own: another TASKS backend needs no database.
        stored = [stored_message(message) for message in email_messages if message.recipients()]
        for arguments in stored:
            enqueue_with_transaction(send_stored_message, **arguments)
        return len(stored)


def stored_message(message: EmailMessage) -> dict[str, Any]:
    """``send_stored_message``'s arguments for ``message``: its envelope and its final bytes."""
    sender = _addr_spec(message.from_email)
    local, at, domain = sender.rpartition("@")
    if at:
        sender = f"{local}@{ascii_domain(domain)}"  # As the transport sends it: MAIL FROM.
    rendered = copy(message)  # The caller's message keeps its headers.
    if not any(name.lower() == "message-id" for name in message.extra_headers):
        # Set here, once, so every attempt sends it. Django's own default is
        # named after this host's FQDN, which can take seconds to look up
        # and would name an internal host in every mail.
        sender_domain = sender.rpartition("@")[2] or envelope_sender().rpartition("@")[2]
        rendered.extra_headers = {
            **message.extra_headers,
            "Message-ID": make_msgid(domain=sender_domain or "localhost"),
        }
    return {
        "sender": sender,
        "recipients": [_addr_spec(address) for address in message.recipients()],
        "message": b64encode(rendered.message(policy=STORED_POLICY).as_bytes()).decode("ascii"),
    }


def _addr_spec(address: Any) -> str:
    """The ``local@domain`` of one address (``"Ada <ada@example.com>"`` -> ``ada@example.com``).

    The checks Django's SMTP backend makes before it sends (prep_address):
    ValueError for anything but exactly one well-formed address, which
    includes a CR or LF smuggled into it. Recipients are made canonical
    (mailer/addresses.py) when the job runs, under the rules of that moment.
    """
    text = force_str(address)
    parsed = AddressHeader.value_parser(text)
    defects = {str(defect) for defect in parsed.all_defects}
    defects.discard("addr-spec local part with no domain")  # Django allows "webmaster".
    defects.discard("local-part contains non-ASCII characters)")  # SMTPUTF8 decides, later.
    if defects:
        raise ValueError(f"Invalid address {text!r}: {'; '.join(sorted(defects))}")
    mailboxes = parsed.all_mailboxes
    if len(mailboxes) != 1:
        raise ValueError(f"Invalid address {text!r}: must be a single address")
    return str(mailboxes[0].addr_spec)
