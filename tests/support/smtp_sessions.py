"""An SMTP test server that knows its sessions: opened in all, open now, most open at once."""

import threading

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.smtp_server import SMTPTestServer


class SessionCountingServer(SMTPTestServer):
    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self._sessions: list[SMTP] = []
        self._sessions_lock = threading.Lock()
        self.most_open = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # Every session the transport opens starts with an EHLO, so the most
        # open at once is always reached at one.
        session.host_name = hostname
        with self._sessions_lock:
            self._sessions.append(server)
        self.most_open = max(self.most_open, self.open_sessions())
        return responses

    @property
    def sessions_opened(self) -> int:
        with self._sessions_lock:
            return len(self._sessions)

    def open_sessions(self) -> int:
        # aiosmtpd drops a session's transport when the connection is lost.
        with self._sessions_lock:
            sessions = list(self._sessions)
        return sum(
            1 for smtp in sessions if smtp.transport is not None and not smtp.transport.is_closing()
        )
