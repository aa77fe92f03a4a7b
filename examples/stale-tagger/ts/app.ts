// stale-tagger: tags the devices offline for `days` days or more (default 30)
// with `tag` (default "stale"), creating the tag if it is missing.
import { listDevices } from 'level:api/devices@0.1.0';
import { createTag, listTags, tagDevices } from 'level:api/tags@0.1.0';
import { invalidInput, log, pages, plugin, type Page, type PageRequest } from './levelhost.js';

interface Device {
  id: string;
  hostname: string;
  online: boolean;
  lastSeenAt?: string;
  tags: string[];
}

interface Tag {
  id: string;
  name: string;
}

interface Input {
  days?: number;
  tag?: string;
}

const devices = listDevices as (filter: object, include: object, page: PageRequest) => Page<Device>;
const tags = listTags as (deviceId: string | undefined, page: PageRequest) => Page<Tag>;
const DAY_MS = 86_400_000;

export const handler = plugin((input: Input) => {
  const days = input.days ?? 30;
  const name = input.tag ?? 'stale';
  if (!Number.isInteger(days) || days < 1) throw invalidInput('days must be a whole number, at least 1');
  const tag: Tag = [...pages((page) => tags(undefined, page))].find((t) => t.name === name) ?? (createTag(name) as Tag);
  const now = Date.now();
  const stale = [...pages((page) => devices({}, {}, page))].filter(
    (d) => !d.online && d.lastSeenAt !== undefined && Math.floor((now - Date.parse(d.lastSeenAt)) / DAY_MS) >= days,
  );
  const untagged = stale.filter((d) => !d.tags.includes(name));
  for (let i = 0; i < untagged.length; i += 100) {
    tagDevices(tag.id, untagged.slice(i, i + 100).map((d) => d.id));
  }
  log.info('tagged stale devices', { tagged: untagged.length });
  return { tag: name, stale: stale.length, tagged: untagged.map((d) => d.hostname) };
});
