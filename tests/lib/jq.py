#!/usr/bin/env python3
"""Tiny JSON path reader for tests (no jq dependency). Usage: jq.py 'peers.0.endpoint' < status.json
Prints the value (JSON for objects/lists, plain for scalars); 'null' if missing."""
import json, sys
v = json.load(sys.stdin)
for part in sys.argv[1].split(".") if sys.argv[1] else []:
    try:
        v = v[int(part)] if isinstance(v, list) else v.get(part)
    except (IndexError, ValueError, AttributeError):
        v = None
    if v is None:
        break
print(json.dumps(v) if isinstance(v, (dict, list)) or v is None else v)
