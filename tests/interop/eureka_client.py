"""A small HTTP service that registers with agora's registry through py-eureka-client.

Usage: eureka_client.py EUREKA_URL. Prints progress lines for the Rust test that runs it:
`registered ID`, then `discovered BODY` once the client found itself through the registry and
called itself, and `stopped` after stdin closes (or SIGTERM) and the client has cancelled.
"""

import http.server
import signal
import sys
import threading

import py_eureka_client.eureka_client as eureka_client

APP = "interop-svc"


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {APP}".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def say(line):
    print(line, flush=True)


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    instance_id = f"127.0.0.1:{APP}:{port}"
    # Renewals (and with them the delta fetches) every second.
    eureka_client.init(
        eureka_server=sys.argv[1],
        app_name=APP,
        instance_id=instance_id,
        instance_host="127.0.0.1",
        instance_ip="127.0.0.1",
        instance_port=port,
        renewal_interval_in_secs=1,
    )
    say(f"registered {instance_id}")

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()

    while not done.is_set():
        try:
            body = eureka_client.do_service(APP.upper(), "/", timeout=5)
            say(f"discovered {body}")
            break
        except Exception as error:  # not in the local registry yet: wait for the next fetch
            say(f"waiting {error!r}")
            done.wait(0.2)

    done.wait()
    eureka_client.stop()
    server.shutdown()
    say("stopped")


if __name__ == "__main__":
    main()
