"""The harness's own views (``floor-hello``, ``extra-thread-insert``, ``inline``): the
product's validation, user model and mail code, with only the dispatch of the mail changed.

The ``floor`` scenario needs no view here: it is the product's view with ``TASKS``
set to Django's ``DummyBackend`` (``bench/scenarios.py``)."""

import json
import uuid

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from mailer.messages import account_mail, envelope_sender
from mailer.transport import get_transport
from signup.models import User
from signup.validation import normalise_email

REGISTERED = "User registered"
WELCOME = ("welcome", "Welcome! Choose your password")


def _email(request: HttpRequest) -> tuple[str, HttpResponse | None]:
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError):
        return "", JsonResponse({"detail": "Malformed JSON."}, status=400)
    raw = data.get("email") if isinstance(data, dict) else None
    email, problems = normalise_email(raw)
    if problems:
        errors = {"email": problems}
        return "", JsonResponse({"detail": "Invalid input.", "errors": errors}, status=400)
    return email, None


def _create_user(email: str) -> None:
    with transaction.atomic():
        if not User.objects.filter(email=email).exists():
            User.objects.create_user(email)


async def _sign_up(request: HttpRequest) -> tuple[str, HttpResponse | None]:
    """Validate the address and create the user; (address, None) or ("", the 400)."""
    email, problem = _email(request)
    if problem is None:
        await sync_to_async(_create_user)(email)
    return email, problem


@csrf_exempt
@require_POST
async def floor_hello(request: HttpRequest) -> HttpResponse:
    """The framework floor: no parsing, no database, no mail."""
    return JsonResponse({"detail": REGISTERED}, status=201)


@csrf_exempt
@require_POST
async def thread_insert(request: HttpRequest) -> HttpResponse:
    """Validate and create the user on Django's thread-per-request path; send nothing."""
    _, problem = await _sign_up(request)
    return problem or JsonResponse({"detail": REGISTERED}, status=201)


@csrf_exempt
@require_POST
async def inline(request: HttpRequest) -> HttpResponse:
    """The blocking foil: the request waits for the SMTP server's 250."""
    email, problem = await _sign_up(request)
    if problem is not None:
        return problem
    template, subject = WELCOME
    message = await sync_to_async(account_mail)(template, subject, email, uuid.uuid4().hex)
    if message is not None:
        await get_transport().send(message, sender=envelope_sender(), recipients=[email])
    return JsonResponse({"detail": REGISTERED}, status=201)
