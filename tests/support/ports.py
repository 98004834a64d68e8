"""Free TCP ports for the servers tests start."""

import socket


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a race with other processes is unlikely)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
