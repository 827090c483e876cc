#!/usr/bin/env python3
"""An independent WeChat peer for safe-mode tests: it does what WeChat's servers do, written
from WeChat's documentation (WXBizMsgCrypt) with the `cryptography` package, sharing no code
with the crate.

    wechat_peer.py message      URL TOKEN AES_KEY APPID CONTENT [--compat]
    wechat_peer.py message-json URL TOKEN AES_KEY APPID CONTENT [--plain]
    wechat_peer.py handshake    URL TOKEN AES_KEY CORPID ECHOSTR

`message` encrypts a text message, signs it, POSTs it, then checks the reply's
msg_signature, decrypts it and checks the app id. `message-json` does the same with a JSON
push, as Mini Programs and the stores send it (body `{"ToUserName", "Encrypt"}`, the reply a
JSON envelope `{"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}` around a JSON reply); with
`--plain` it sends the JSON message unencrypted, signed by `signature` only, and expects a
plain JSON reply (AES_KEY and APPID are then not used). `handshake` is WeCom's encrypted URL
verification. Prints one JSON object; exits 1 on any check that fails.
"""

import base64
import hashlib
import json
import os
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat pads to 32-byte blocks


def aes_key(encoding_aes_key):
    return base64.b64decode(encoding_aes_key + "=")


def sign(*parts):
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def encrypt(key, message, receive_id):
    content = os.urandom(16) + struct.pack(">I", len(message)) + message + receive_id.encode()
    pad = BLOCK - len(content) % BLOCK
    content += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(content) + encryptor.finalize()).decode()


def decrypt(key, encrypted):
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    content = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    pad = content[-1]
    if not 1 <= pad <= BLOCK:
        raise ValueError("bad padding")
    content = content[:-pad]
    (length,) = struct.unpack(">I", content[16:20])
    return content[20 : 20 + length], content[20 + length :].decode()


def request(url, data=None):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "text/xml")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def fail(result, reason):
    result["error"] = reason
    print(json.dumps(result, ensure_ascii=False))
    sys.exit(1)


def message(url, token, encoding_aes_key, app_id, content, compat):
    key = aes_key(encoding_aes_key)
    timestamp, nonce = str(int(time.time())), str(int.from_bytes(os.urandom(4), "big"))
    openid = "oPeer" + nonce
    plaintext = (
        "<xml><ToUserName><![CDATA[gh_peer]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{nonce}</MsgId></xml>"
    )
    encrypted = encrypt(key, plaintext.encode(), app_id)
    if compat:
        body = plaintext.replace("</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    else:
        body = f"<xml><ToUserName><![CDATA[gh_peer]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    query = urllib.parse.urlencode(
        {
            "signature": sign(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": openid,
            "encrypt_type": "aes",
            "msg_signature": sign(token, timestamp, nonce, encrypted),
        }
    )
    status, answer = request(f"{url}?{query}", body.encode())
    result = {"status": status}
    if status != 200:
        fail(result, answer.decode(errors="replace"))
    envelope = ET.fromstring(answer)
    reply_encrypted = envelope.findtext("Encrypt")
    reply_signature = envelope.findtext("MsgSignature")
    reply_timestamp = envelope.findtext("TimeStamp")
    reply_nonce = envelope.findtext("Nonce")
    if None in (reply_encrypted, reply_signature, reply_timestamp, reply_nonce):
        fail(result, "reply is not an encrypted envelope: " + answer.decode(errors="replace"))
    if sign(token, reply_timestamp, reply_nonce, reply_encrypted) != reply_signature:
        fail(result, "reply MsgSignature does not verify")
    reply, reply_app_id = decrypt(key, reply_encrypted)
    if reply_app_id != app_id:
        fail(result, f"reply is for app id {reply_app_id!r}")
    parsed = ET.fromstring(reply)
    result.update(
        {
            "to": parsed.findtext("ToUserName"),
            "from": parsed.findtext("FromUserName"),
            "msg_type": parsed.findtext("MsgType"),
            "content": parsed.findtext("Content"),
            "sent_to": openid,
        }
    )
    if result["to"] != openid or result["from"] != "gh_peer":
        fail(result, "reply is not addressed back to the sender")
    print(json.dumps(result, ensure_ascii=False))


def message_json(url, token, encoding_aes_key, app_id, content, plain):
    timestamp, nonce = str(int(time.time())), str(int.from_bytes(os.urandom(4), "big"))
    openid = "oPeer" + nonce
    # Numbers as numbers, as WeChat's JSON pushes have them.
    plaintext = json.dumps(
        {
            "ToUserName": "gh_peer",
            "FromUserName": openid,
            "CreateTime": int(timestamp),
            "MsgType": "text",
            "Content": content,
            "MsgId": int(nonce),
        },
        ensure_ascii=False,
    )
    params = {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    if plain:
        body = plaintext
    else:
        key = aes_key(encoding_aes_key)
        encrypted = encrypt(key, plaintext.encode(), app_id)
        body = json.dumps({"ToUserName": "gh_peer", "Encrypt": encrypted})
        params.update(
            {"encrypt_type": "aes", "msg_signature": sign(token, timestamp, nonce, encrypted)}
        )
    status, answer = request(f"{url}?{urllib.parse.urlencode(params)}", body.encode())
    result = {"status": status, "encrypted": not plain}
    if status != 200:
        fail(result, answer.decode(errors="replace"))
    try:
        outer = json.loads(answer)
    except ValueError:
        fail(result, "reply is not JSON: " + answer.decode(errors="replace"))
    if plain:
        reply = outer
    else:
        fields = [outer.get(name) for name in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce")]
        if None in fields:
            fail(result, "reply is not a JSON envelope: " + answer.decode(errors="replace"))
        reply_encrypted, reply_signature, reply_timestamp, reply_nonce = fields
        if sign(token, str(reply_timestamp), str(reply_nonce), reply_encrypted) != reply_signature:
            fail(result, "reply MsgSignature does not verify")
        decrypted, reply_app_id = decrypt(key, reply_encrypted)
        if reply_app_id != app_id:
            fail(result, f"reply is for app id {reply_app_id!r}")
        try:
            reply = json.loads(decrypted)
        except ValueError:
            fail(result, "decrypted reply is not JSON: " + decrypted.decode(errors="replace"))
    result.update(
        {
            "to": reply.get("ToUserName"),
            "from": reply.get("FromUserName"),
            "msg_type": reply.get("MsgType"),
            "content": reply.get("Content"),
            "create_time": reply.get("CreateTime"),
            "sent_to": openid,
        }
    )
    if result["to"] != openid or result["from"] != "gh_peer":
        fail(result, "reply is not addressed back to the sender")
    print(json.dumps(result, ensure_ascii=False))


def handshake(url, token, encoding_aes_key, corp_id, echostr):
    key = aes_key(encoding_aes_key)
    timestamp, nonce = str(int(time.time())), str(int.from_bytes(os.urandom(4), "big"))
    encrypted = encrypt(key, echostr.encode(), corp_id)
    query = urllib.parse.urlencode(
        {
            "msg_signature": sign(token, timestamp, nonce, encrypted),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": encrypted,
        }
    )
    status, answer = request(f"{url}?{query}")
    result = {"status": status, "answer": answer.decode(errors="replace")}
    if status != 200 or result["answer"] != echostr:
        fail(result, "handshake not answered with the decrypted echostr")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "message":
        message(*args[:5], compat="--compat" in args)
    elif command == "message-json":
        message_json(*args[:5], plain="--plain" in args)
    elif command == "handshake":
        handshake(*args[:5])
    else:
        sys.exit(f"unknown command {command}")
