"""One instance of a small HTTP service behind agora's `lb://` gateway routes.

Usage: lb_service.py EUREKA_URL APP. It answers every request with JSON naming its instance id
and echoing the method, path and body, and registers through py-eureka-client with a short lease
(renewals every second, expiry after 3 s without one). Prints `registered ID PORT` once
registered, and `stopped` after stdin closes (or SIGTERM) and the client has cancelled. A test
that kills it with SIGKILL leaves its registration to expire.
"""

import http.server
import json
import signal
import sys
import threading

import py_eureka_client.eureka_client as eureka_client


class Echo(http.server.BaseHTTPRequestHandler):
    instance_id = ""

    def answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = json.dumps(
            {
                "instance": self.instance_id,
                "method": self.command,
                "path": self.path,
                "body": self.rfile.read(length).decode(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = answer

    def log_message(self, *args):
        pass


def main():
    eureka_url, app = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    port = server.server_address[1]
    Echo.instance_id = f"127.0.0.1:{app}:{port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    eureka_client.init(
        eureka_server=eureka_url,
        app_name=app,
        instance_id=Echo.instance_id,
        instance_host="127.0.0.1",
        instance_ip="127.0.0.1",
        instance_port=port,
        renewal_interval_in_secs=1,
        duration_in_secs=3,
        should_discover=False,
    )
    print(f"registered {Echo.instance_id} {port}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    eureka_client.stop()
    server.shutdown()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
