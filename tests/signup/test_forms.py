"""Who gets a password-reset mail: the account the canonical mailbox names, within the limit."""

from typing import Any

import pytest

from signup.forms import PasswordResetForm
from signup.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-unusual-passphrase-42"


def recipients(email: str) -> list[str]:
    return [user.email for user in PasswordResetForm().get_users(email)]


def test_the_account_of_the_canonical_mailbox_gets_the_mail() -> None:
    User.objects.create_user("ada@office.example", PASSWORD)
    assert recipients('"ADA"@O\ufb03ce.Example.') == ["ada@office.example"]


@pytest.mark.parametrize(
    "account",
    [
        pytest.param({"password": None}, id="never-chose-a-password"),
        pytest.param({"password": PASSWORD, "is_active": False}, id="inactive"),
    ],
)
def test_an_account_that_may_not_reset_gets_nothing(account: dict[str, Any]) -> None:
    User.objects.create_user("ada@example.com", **account)
    assert recipients("ada@example.com") == []


@pytest.mark.parametrize("email", ["nobody@example.com", "ada@[127.0.0.1]", "ada@localhost"])
def test_an_address_without_an_account_or_undeliverable_gets_nothing(email: str) -> None:
    User.objects.create_user("ada@example.com", PASSWORD)
    assert recipients(email) == []


def test_reset_mails_count_against_the_per_address_mail_limit(settings: Any) -> None:
    settings.MAIL_RATE_PER_ADDRESS = "2/h"
    User.objects.create_user("ada@example.com", PASSWORD)
    sent = [
        recipients(spelling)
        for spelling in ["ada@example.com", "ADA@example.com", "ada@EXAMPLE.com"]
    ]
    assert sent == [["ada@example.com"], ["ada@example.com"], []]
