"""Turning what a client sent into an address we accept, or reasons why not."""

import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit for a forward path.


def normalise_email(raw: object) -> tuple[str, list[str]]:
    """Return (normalised address, problems). The address is valid iff no problems.

    Addresses are stripped, NFC-normalised and lowercased whole: nearly every
    provider treats the local part case-insensitively, and one account per
    mailbox matters more than the rare server that does not.
    """
    if raw is None or raw == "":
        return "", ["This field is required."]
    if not isinstance(raw, str):
        return "", ["Must be a string."]
    email = unicodedata.normalize("NFC", raw.strip()).lower()
    if not email:
        return "", ["This field is required."]
    if any(unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"} for char in email):
        return "", ["Must not contain control characters."]
    if len(email) > MAX_EMAIL_LENGTH:
        return "", [f"Must be at most {MAX_EMAIL_LENGTH} characters."]
    try:
        validate_email(email)
    except ValidationError:
        return "", ["Enter a valid email address."]
    return email, []
