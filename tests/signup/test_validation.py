"""The address rules: all spellings of a mailbox map to it; the undeliverable are refused."""

from typing import Any

import pytest

from mailer.addresses import UndeliverableAddress, canonical_mailbox
from signup.validation import normalise_email

# Each row: ways to write one mailbox, all of which must become the first entry's
# canonical form. Together they are the spellings the per-address limit was
# once bypassed with (a new account and new mails for each).
EQUIVALENT_SPELLINGS = {
    "ada@office.example": [
        "ada@office.example",
        "  ADA@Office.Example ",
        '"ada"@office.example',
        '"ADA"@office.example',
        '"\\a\\d\\a"@office.example',  # Quoted pairs that stand for plain letters.
        "ada@office.example.",  # Fully qualified.
        "ada@office.example\u3002",  # Ideographic full stop as the trailing dot.
        "ada@office\u3002example",  # ... and as the separator.
        "ada@o\ufb03ce.example",  # ﬃ ligature.
        "ada@of\ufb01ce.example",  # ﬁ ligature.
        "ada@o\ufb00ice.example",  # ﬀ ligature.
        "ada@\uff4f\uff46\uff46\uff49\uff43\uff45.example",  # Fullwidth letters.
        "ada@office.\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25",  # Fullwidth capitals.
        "ada@\u24deffice.example",  # Circled o.
        "ada@\u2134ffice.example",  # Script o.
        "ada@office\ufe0f.example",  # A variation selector, which IDNA drops.
        "Ada@O\ufb03CE.EXAMPLE.",
    ],
    "owner@xn--bcher-kva.example": [
        "owner@bücher.example",
        "owner@BÜCHER.example",
        "owner@bu\u0308cher.example",  # Decomposed ü.
        "owner@xn--bcher-kva.example",
        "owner@XN--BCHER-KVA.EXAMPLE",
    ],
    # IDNA 2008: ß is its own letter, not "ss" (the stdlib's IDNA 2003 codec
    # would send this mail to strasse.de, someone else's domain).
    "post@xn--strae-oqa.de": ["post@straße.de", "post@STRAẞE.de"],
    "first.last+tag@example.com": ["First.Last+Tag@Example.com", '"first.last+tag"@example.com'],
}


@pytest.mark.parametrize(
    ("spelling", "mailbox"),
    [(spelling, mailbox) for mailbox, rows in EQUIVALENT_SPELLINGS.items() for spelling in rows],
)
def test_every_spelling_of_a_mailbox_is_the_same_canonical_mailbox(
    spelling: str, mailbox: str
) -> None:
    assert canonical_mailbox(spelling, smtputf8=False) == mailbox
    assert canonical_mailbox(mailbox, smtputf8=False) == mailbox  # Idempotent.


LONG_IDN_LABEL = "ü" * 40  # 46 characters once encoded (xn--...).

REFUSALS = [
    ("user@[127.0.0.1]", "Addresses at an IP address are not accepted."),
    ("user@[IPv6:2001:db8::1]", "Addresses at an IP address are not accepted."),
    ("user@[IPv6:::ffff:127.0.0.1]", "Addresses at an IP address are not accepted."),
    ("user@127.0.0.1", "Addresses at an IP address are not accepted."),
    ("user@\uff11\uff12\uff17.0.0.1", "Addresses at an IP address are not accepted."),
    ('"a b"@example.com', "Addresses that need quotes before the @ are not accepted."),
    ('"a@b"@example.com', "Addresses that need quotes before the @ are not accepted."),
    ('"a..b"@example.com', "Addresses that need quotes before the @ are not accepted."),
    ('"a\\"b"@example.com', "Addresses that need quotes before the @ are not accepted."),
    ('""@example.com', "Addresses that need quotes before the @ are not accepted."),
    ('"a"b@example.com', "Enter a valid email address."),
    ('"unterminated@example.com', "Enter a valid email address."),
    ("a" * 65 + "@example.com", "The part before the @ must be at most 64 characters."),
    ('"' + "a" * 65 + '"@example.com', "The part before the @ must be at most 64 characters."),
    ("a@" + "b" * 64 + ".com", "Each part of the domain must be at most 63 characters."),
    ("a@" + "ü" * 60 + ".com", "Each part of the domain must be at most 63 characters."),
    (
        "a@" + ".".join([LONG_IDN_LABEL] * 6) + ".com",
        "The domain must be at most 253 characters.",
    ),
    ("josé@example.com", "Only ASCII characters are accepted before the @."),
    ("\uff41da@example.com", "Only ASCII characters are accepted before the @."),
    ("a@example", "Enter a valid email address."),
    ("a@localhost", "Enter a valid email address."),
    ("a@example.com..", "Enter a valid email address."),
    ("a@exa..mple.com", "Enter a valid email address."),
    ("a@-example.com", "Enter a valid email address."),
    ("a@exa_mple.com", "Enter a valid email address."),
    ("a@\u2603.com", "Enter a valid email address."),  # A symbol IDNA 2008 does not allow.
    ("a@xn--abc.com", "Enter a valid email address."),  # Not valid punycode.
    ("a..b@example.com", "Enter a valid email address."),
    (".a@example.com", "Enter a valid email address."),
    ("a(comment)@example.com", "Enter a valid email address."),
    ("a@b@example.com", "Enter a valid email address."),
    ("@example.com", "Enter a valid email address."),
    ("a@", "Enter a valid email address."),
    ("zero\u200bwidth@example.com", "Must not contain control characters."),
    ("a" * 64 + "@" + "b" * 186 + ".com", "Must be at most 254 characters."),
    # Within 254 characters as typed, over it once the ligatures are unfolded.
    ("a" * 60 + "@" + ".".join(["\ufb03" * 20] * 4) + ".com", "Must be at most 254 characters."),
]


@pytest.mark.parametrize(("address", "reason"), REFUSALS)
def test_undeliverable_addresses_are_refused_with_a_reason(address: str, reason: str) -> None:
    with pytest.raises(UndeliverableAddress) as refusal:
        canonical_mailbox(address, smtputf8=False)
    assert refusal.value.reason == reason
    assert refusal.value.transient is False  # A job that meets one fails at once.


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("José@Bücher.example", "josé@xn--bcher-kva.example"),
        ('"josé"@example.com', "josé@example.com"),
        ("jose\u0301@example.com", "josé@example.com"),  # NFC: one mailbox, one string.
        ("用户@例子.测试", "用户@xn--fsqu00a.xn--0zwm56d"),
    ],
)
def test_non_ascii_local_parts_are_accepted_with_smtputf8(address: str, mailbox: str) -> None:
    assert canonical_mailbox(address, smtputf8=True) == mailbox
    assert canonical_mailbox(mailbox, smtputf8=True) == mailbox


def test_smtputf8_does_not_relax_the_other_rules() -> None:
    with pytest.raises(UndeliverableAddress) as refusal:
        canonical_mailbox("jos\u00e9\u00a0x@example.com", smtputf8=True)  # No-break space.
    assert refusal.value.reason == "Enter a valid email address."
    with pytest.raises(UndeliverableAddress) as refusal:
        canonical_mailbox("é" * 33 + "@example.com", smtputf8=True)  # 66 octets in UTF-8.
    assert refusal.value.reason == "The part before the @ must be at most 64 characters."


@pytest.mark.parametrize(("smtputf8", "accepted"), [(False, False), (True, True)])
def test_normalise_email_follows_the_smtputf8_setting(
    settings: Any, smtputf8: bool, accepted: bool
) -> None:
    settings.EMAIL_SMTPUTF8 = smtputf8
    email, problems = normalise_email("José@example.com")
    if accepted:
        assert (email, problems) == ("josé@example.com", [])
    else:
        assert (email, problems) == ("", ["Only ASCII characters are accepted before the @."])


@pytest.mark.parametrize(
    ("raw", "problem"),
    [(None, "This field is required."), ("", "This field is required."), (7, "Must be a string.")],
)
def test_normalise_email_refuses_what_is_not_a_string(raw: object, problem: str) -> None:
    assert normalise_email(raw) == ("", [problem])
