from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.sessions.middleware import SessionMiddleware
from django.urls import path, reverse_lazy
from django.utils.decorators import decorator_from_middleware
from django.views.decorators.csrf import csrf_protect
from django.views.generic import RedirectView

from asgi_project.admin_urls import admin_urls
from background.views import healthz, metrics
from signup.forms import PasswordResetForm
from signup.views import register_user

# Only the set-password pages need a session (the reset view keeps the token
# there) and CSRF from middleware, and only the admin its session, user and
# messages (asgi_project/admin_urls.py); the project runs no global middleware
# for them.
with_session = decorator_from_middleware(SessionMiddleware)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="signup")),
    path("signup/", register_user, name="signup"),
    path(
        "account/set-password/<uidb64>/<token>/",
        with_session(
            csrf_protect(
                auth_views.PasswordResetConfirmView.as_view(
                    success_url=reverse_lazy("password_set_done"),
                )
            )
        ),
        name="password_set",
    ),
    path(
        "account/set-password/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_set_done",
    ),
    # Django's own view (CSRF protected, no session needed); its mail goes
    # through Django's mail API, so through the outbox (mailer/outbox.py).
    # Links are built on SITE_URL, never on the request's Host.
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            form_class=PasswordResetForm,
            subject_template_name="mailer/password_reset_subject.txt",
            email_template_name="mailer/password_reset.txt",
            html_email_template_name="mailer/password_reset.html",
            extra_email_context={"site_url": settings.SITE_URL},
        ),
        name="password_reset",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin_urls()),
]
