#!/usr/bin/env python3
"""A WeChat-like client for a running callback server: a burst of signed text messages,
sent at once, then each sent again as WeChat retries it (same signed query, same body).

    python3 tests/peer/burst.py [--url http://127.0.0.1:3000/wechat] [--token towerwechatdemo]
                                [--count 150] [--retries 1] [--start-id N]

Prints how many answers were 200, the slowest answer, and the answers' bodies by kind.
Exits non-zero if any answer was not 200 or took 5 s or more (WeChat's deadline).
"""
import argparse
import concurrent.futures
import hashlib
import time
import urllib.error
import urllib.request


def sign(token, timestamp, nonce):
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def delivery(url, token, msg_id):
    timestamp = str(int(time.time()))
    nonce = str(msg_id)
    query = f"signature={sign(token, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}&openid=oBurstUser"
    body = (
        "<xml><ToUserName><![CDATA[gh_burst]]></ToUserName>"
        "<FromUserName><![CDATA[oBurstUser]]></FromUserName>"
        f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[message {msg_id}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()
    return f"{url}?{query}", body


def send(target):
    url, body = target
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/xml"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    return status, text, time.monotonic() - started


def burst(targets):
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return list(pool.map(send, targets))


def report(name, answers):
    ok = sum(1 for status, _, _ in answers if status == 200)
    slowest = max(seconds for _, _, seconds in answers)
    kinds = {}
    for _, text, _ in answers:
        kind = "success" if text == "success" else ("xml reply" if text.startswith("<xml>") else text[:40])
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"{name}: {ok}/{len(answers)} answered 200, slowest {slowest:.3f} s, bodies {kinds}")
    return ok == len(answers) and slowest < 5.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:3000/wechat")
    parser.add_argument("--token", default="towerwechatdemo")
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--start-id", type=int, default=int(time.time()) * 1000)
    args = parser.parse_args()

    targets = [delivery(args.url, args.token, args.start_id + i) for i in range(args.count)]
    print(f"MsgIds {args.start_id}..{args.start_id + args.count - 1}")
    good = report("first delivery", burst(targets))
    for attempt in range(args.retries):
        good &= report(f"retry {attempt + 1}", burst(targets))
    raise SystemExit(0 if good else 1)


if __name__ == "__main__":
    main()
