"""Accounts in the admin and from ``createsuperuser``: email-only, stored as signups store them."""

from collections.abc import Iterator
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.test import Client

from signup.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-operator-passphrase"
USERS = "/admin/signup/user/"


@pytest.fixture(autouse=True)
def _fresh_content_types() -> Iterator[None]:
    ContentType.objects.clear_cache()  # The admin's log must not use another test's rows.
    yield
    ContentType.objects.clear_cache()


def create_superuser(monkeypatch: pytest.MonkeyPatch, email: str) -> str:
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", email)
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    output = StringIO()
    call_command("createsuperuser", "--noinput", stdout=output)
    return output.getvalue()


def test_createsuperuser_without_input_makes_an_operator_who_can_log_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "Superuser created successfully." in create_superuser(monkeypatch, "Op@Example.COM")

    (operator,) = User.objects.all()
    assert operator.email == "op@example.com"  # The canonical mailbox, as a signup stores it.
    assert (operator.is_staff, operator.is_superuser, operator.is_active) == (True, True, True)
    assert authenticate(username="OP@example.com", password=PASSWORD) == operator
    assert authenticate(username="op@example.com", password="wrong") is None

    browser = Client()
    assert browser.login(username="op@example.com", password=PASSWORD)
    assert browser.get("/admin/").status_code == 200


def test_createsuperuser_refuses_an_address_that_has_an_account_in_another_spelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    User.objects.create_user("ada@example.com")  # A signup.
    with pytest.raises(CommandError, match="That email is already taken"):
        create_superuser(monkeypatch, "ADA@example.com")


def test_an_operator_address_without_a_mail_domain_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_superuser(monkeypatch, "Admin@localhost")
    assert User.objects.get().email == "Admin@localhost"  # Django's own normalisation.


@pytest.fixture
def operator() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("operator@example.com", PASSWORD))
    return client


def test_the_user_list_shows_and_finds_accounts_by_address(operator: Client) -> None:
    User.objects.create_user("ada@example.com")
    User.objects.create_user("bob@example.com")
    page = operator.get(USERS, {"q": "ada"})
    assert page.status_code == 200
    assert [user.email for user in page.context["cl"].result_list] == ["ada@example.com"]


def test_an_account_added_in_the_admin_is_stored_as_a_signup_would_store_it(
    operator: Client,
) -> None:
    form = {"email": "Grace@Example.COM", "usable_password": "true"}
    form |= {"password1": PASSWORD, "password2": PASSWORD}
    added = operator.post(f"{USERS}add/", form)
    assert added.status_code == 302
    grace = User.objects.get(email="grace@example.com")
    assert grace.check_password(PASSWORD)
    assert not grace.is_staff

    again = operator.post(f"{USERS}add/", form | {"email": "GRACE@example.com"})
    assert again.status_code == 200
    assert b"User with this Email already exists." in again.content
    assert User.objects.filter(email__iexact="grace@example.com").count() == 1


def test_an_account_page_edits_the_address_and_permissions(operator: Client) -> None:
    ada = User.objects.create_user("ada@example.com")
    page = operator.get(f"{USERS}{ada.pk}/change/")
    assert page.status_code == 200
    assert b'name="email"' in page.content
    assert b'name="is_staff"' in page.content
    assert b'name="date_joined"' not in page.content  # Read-only.
