#!/usr/bin/env python3
"""Seed corpora for the fuzz targets from the protocol core's test vectors
(crates/nip46/tests/vectors) and a few hand-made frames. Idempotent."""
import hashlib
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent
vectors = root.parent / "crates" / "nip46" / "tests" / "vectors"
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
if not out.is_absolute():
    out = root / out

requests = json.loads((vectors / "requests.json").read_text())
uris = json.loads((vectors / "uris.json").read_text())
perms = json.loads((vectors / "permissions.json").read_text())

def texts(group, field):
    return [v[field] for part in ("valid", "invalid") for v in group.get(part, []) if isinstance(v, dict) and field in v]

request_json = [r["json"] for r in requests]
uri_texts = texts(uris, "uri")
event = {"id": "0" * 64, "pubkey": "1" * 64, "created_at": 1700000000, "kind": 24133,
         "tags": [["p", "2" * 64]], "content": "AgAAAA==", "sig": "3" * 128}
seeds = {
    "request": request_json,
    "response": ['{"id":"r1","result":"pong"}', '{"id":"r1","result":"auth_url","error":"https://x.example/a"}',
                 '{"id":"r1","error":"unauthorized: no"}', '{"id":7,"result":null}'],
    "envelope_open": [json.dumps(event)] + request_json,
    "bunker_uri": [u for u in uri_texts if u.startswith("bunker")] or ["bunker://"],
    "nostrconnect_uri": [u for u in uri_texts if u.startswith("nostrconnect")] or ["nostrconnect://"],
    "permissions": texts(perms, "text"),
    "relay_client_message": [json.dumps(["EVENT", event]), '["REQ","s",{"kinds":[24133]}]', '["CLOSE","s"]',
                             json.dumps(["AUTH", dict(event, kind=22242)])],
    "pool_relay_message": [json.dumps(["EVENT", "s", event]), '["OK","' + "0" * 64 + '",true,""]',
                           '["EOSE","s"]', '["NOTICE","hi"]', '["CLOSED","s","auth-required: x"]', '["AUTH","c"]'],
    "nip05_document": ['{"names":{"_":"' + "fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52" +
                       '"},"nip46":{"relays":["wss://r.example"]}}', '{}', '[]'],
}
for target, items in seeds.items():
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    for item in items:
        data = item.encode()
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
print(f"seeded {sum(len(v) for v in seeds.values())} inputs for {len(seeds)} targets in {out}")
