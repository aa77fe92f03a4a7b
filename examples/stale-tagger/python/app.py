"""stale-tagger: tags the devices offline for `days` days or more (default 30)
with `tag` (default "stale"), creating the tag if it is missing."""

from datetime import datetime, timezone

import levelhost
from wit_world.imports import devices, tags

EVERY_DEVICE = devices.DeviceFilter(group=None, tag_id=None, hostname=None, serial_number=None)


def days_since(timestamp, now):
    return (now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).days


def run(input, invocation):
    days = input.get("days", 30)
    name = input.get("tag", "stale")
    if not isinstance(days, int) or days < 1:
        raise levelhost.InvalidInput("days must be a whole number, at least 1")
    every_tag = levelhost.pages(lambda page: tags.list_tags(None, page))
    tag = next((t for t in every_tag if t.name == name), None) or tags.create_tag(name)
    now = datetime.now(timezone.utc)
    every_device = levelhost.pages(lambda page: devices.list_devices(EVERY_DEVICE, devices.DeviceInclude(0), page))
    stale = [d for d in every_device if not d.online and d.last_seen_at and days_since(d.last_seen_at, now) >= days]
    untagged = [d for d in stale if name not in d.tags]
    for start in range(0, len(untagged), 100):
        tags.tag_devices(tag.id, [d.id for d in untagged[start : start + 100]])
    levelhost.log.info("tagged stale devices", tagged=len(untagged))
    return {"tag": name, "stale": len(stale), "tagged": [d.hostname for d in untagged]}


Handler = levelhost.plugin(run)
