"""Redis: a fakeredis server (with Lua) on a loopback port, so every client uses a real redis:// URL."""
from __future__ import annotations

import socket
import threading


def _teach_fakeredis_info() -> None:
    """fakeredis (2.40) has no INFO command, which arq's worker calls at start-up; add a minimal one."""
    from fakeredis._commands import command
    from fakeredis.commands_mixins.server_mixin import ServerCommandsMixin

    if hasattr(ServerCommandsMixin, "info"):
        return

    @command((), (bytes,))
    def info(self, *sections: bytes) -> bytes:
        return b"# Server\r\nredis_version:7.4.0\r\n# Clients\r\nconnected_clients:1\r\n# Memory\r\nused_memory_human:1M\r\n"

    ServerCommandsMixin.info = info


class FakeRedisServer:
    """A fakeredis server (with Lua) on a loopback port: a real redis:// URL for any client."""

    def __init__(self, sock: socket.socket | None = None):
        """`sock`: a listening socket to serve on (the grader binds one for a sandboxed service)."""
        from fakeredis import TcpFakeServer

        _teach_fakeredis_info()
        if sock is None:
            self._server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        else:
            self._server = TcpFakeServer(sock.getsockname()[:2], bind_and_activate=False, server_type="redis")
            self._server.socket.close()
            self._server.socket, self._server.server_address = sock, sock.getsockname()
        self._server.daemon_threads = True
        accept = self._server.get_request

        def accept_without_nagle():
            # several replies to one pipeline are separate writes: without TCP_NODELAY each
            # waits for the client's delayed ACK, 40 ms apiece
            connection, address = accept()
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection, address

        self._server.get_request = accept_without_nagle
        self._thread = threading.Thread(target=self._server.serve_forever, name="lab-fakeredis", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"redis://{host}:{port}/0"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
