"""Turning what a client sent into an address we accept, or reasons why not."""

from django.conf import settings

from mailer.addresses import UndeliverableAddress, canonical_mailbox


def normalise_email(raw: object) -> tuple[str, list[str]]:
    """Return (canonical mailbox, problems). The address is valid iff no problems.

    The rules are ``mailer.addresses.canonical_mailbox``'s, so the account, the
    rate-limit key and the mail's envelope all use the same string.
    """
    if raw is None or raw == "":
        return "", ["This field is required."]
    if not isinstance(raw, str):
        return "", ["Must be a string."]
    try:
        return canonical_mailbox(raw, smtputf8=settings.EMAIL_SMTPUTF8), []
    except UndeliverableAddress as refusal:
        return "", [refusal.reason]
