"""The httpx webhook sender against a real loopback socket: a receiver that answers its status
and then dawdles over the body holds a dispatcher thread no longer than one timeout."""

from __future__ import annotations

import socket
import threading
import time

from infra.webhooks import HttpxSender

BODY_BYTES = 40


def test_send_when_the_body_trickles_in_then_the_status_counts_and_the_rest_is_not_awaited() -> (
    None
):
    sent: list[int] = []
    done = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def trickle() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {BODY_BYTES}\r\n\r\n".encode())
                for _ in range(BODY_BYTES):  # one byte per 0.2 s: each read well in time
                    if done.is_set():
                        return
                    time.sleep(0.2)
                    try:
                        conn.sendall(b"x")
                    except OSError:  # the sender hung up: what it should do
                        return
                    sent.append(1)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        status = HttpxSender().send(
            f"http://127.0.0.1:{server.getsockname()[1]}/", b"{}", {}, timeout=0.5
        )
        at_return = len(sent)
        done.set()
        thread.join(timeout=5)

    assert status == 200
    assert at_return < BODY_BYTES // 2  # it stopped reading long before the body ended
