#!/usr/bin/env python3
"""Floods a running quick start with signed, valid text messages whose ToUserName is 60 KB
(issue 11, item 5), each with its own MsgId, and prints the server's RSS as it goes.

    WECHAT_TOKEN=towerwechatdemo cargo run --release --example quickstart --features server &
    scripts/flood-large-messages.py --pid $! --count 3000

Plain mode, keep-alive connections, `--connections` clients at once.
"""
import argparse
import hashlib
import http.client
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:3000")
    parser.add_argument("--token", default="towerwechatdemo")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    host, port = args.addr.split(":")
    account = "g" * args.size
    counter = iter(range(args.count))
    lock = threading.Lock()
    statuses = {}

    def worker(index):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            timestamp = str(int(time.time()))
            nonce = f"{index}{n:08d}"
            signature = hashlib.sha1("".join(sorted([args.token, timestamp, nonce])).encode()).hexdigest()
            body = (
                f"<xml><ToUserName><![CDATA[{account}]]></ToUserName>"
                f"<FromUserName><![CDATA[oUser1234]]></FromUserName><CreateTime>{timestamp}</CreateTime>"
                f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content>"
                f"<MsgId>{1_000_000 + n}</MsgId></xml>"
            ).encode()
            path = f"/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}&openid=oUser1234"
            connection.request("POST", path, body, {"Content-Type": "text/xml"})
            response = connection.getresponse()
            response.read()
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1

    before = rss_kib(args.pid)
    started = time.time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.connections)]
    for thread in threads:
        thread.start()
    peak = before
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, rss_kib(args.pid))
        time.sleep(0.2)
    after = rss_kib(args.pid)
    peak = max(peak, after)
    print(
        f"{args.count} messages of {len(account)} B ToUserName in {time.time() - started:.1f} s: "
        f"statuses {statuses}; RSS before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
        f"after {after / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
