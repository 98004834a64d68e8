from django.apps import AppConfig


class MailerConfig(AppConfig):
    name = "mailer"

    def ready(self) -> None:
        from background.runner import runner_started, runner_stopped

        from .transport import close_transports, keep_connections

        # Pool SMTP connections only on the runner's loop, which lives as long
        # as the server; close them when it stops.
        runner_started.connect(keep_connections, dispatch_uid="mailer.keep_connections")
        runner_stopped.connect(close_transports, dispatch_uid="mailer.close_transports")
