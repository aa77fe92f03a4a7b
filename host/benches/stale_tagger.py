"""B6's baseline: the stale-device-tagger plugin's job as a plain Python
script with `requests`, the way Level automations are commonly written.

Usage: stale_tagger.py BASE_URL API_KEY DAYS TAG
"""

import datetime
import json
import sys

import requests

BATCH = 100


def main() -> None:
    base, key, days, tag_name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    session = requests.Session()
    session.headers["Authorization"] = key

    def walk(path):
        items, after = [], None
        while True:
            params = {"limit": 100}
            if after:
                params["starting_after"] = after
            response = session.get(f"{base}/v2/{path}", params=params)
            response.raise_for_status()
            body = response.json()
            items.extend(body["data"])
            if not body["has_more"] or not body["data"]:
                return items
            after = body["data"][-1]["id"]

    tag = next((t for t in walk("tags") if t["name"] == tag_name), None)
    created = tag is None
    if created:
        response = session.post(f"{base}/v2/tags", json={"name": tag_name})
        response.raise_for_status()
        tag = response.json()

    now = datetime.datetime.now(datetime.timezone.utc)

    def is_stale(device):
        if device.get("online"):
            return False
        seen = device.get("last_seen_at")
        if not seen:
            return False
        seen = datetime.datetime.fromisoformat(seen.replace("Z", "+00:00"))
        return (now - seen).days >= days

    to_tag, to_untag, stale, already = [], [], 0, 0
    for device in walk("devices"):
        has_tag = tag_name in (device.get("tags") or [])
        if is_stale(device):
            stale += 1
            if has_tag:
                already += 1
            else:
                to_tag.append(device)
        elif has_tag and device.get("online"):
            to_untag.append(device)

    for method, devices in (("POST", to_tag), ("DELETE", to_untag)):
        for i in range(0, len(devices), BATCH):
            ids = [d["id"] for d in devices[i : i + BATCH]]
            response = session.request(
                method, f"{base}/v2/tags/{tag['id']}/devices", json={"device_ids": ids}
            )
            response.raise_for_status()

    print(
        json.dumps(
            {
                "tag": tag_name,
                "tag_id": tag["id"],
                "created_tag": created,
                "days": days,
                "stale": stale,
                "tagged": [d["hostname"] for d in to_tag],
                "untagged": [d["hostname"] for d in to_untag],
                "already_tagged": already,
            }
        )
    )


if __name__ == "__main__":
    main()
