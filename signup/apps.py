from django.apps import AppConfig


class SignupConfig(AppConfig):
    name = "signup"

    def ready(self) -> None:
        from . import ratelimit

        # Parse the limits now, so a typo stops the server at startup with a
        # clear message rather than at the first signup.
        ratelimit.signup_rate()
        ratelimit.mail_rate()
