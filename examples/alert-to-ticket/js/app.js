// alert-to-ticket: opens a ticket in the ticketing system (the `ticketing`
// connection) for each Level alert that becomes active, and closes it when
// the alert resolves. `alert:<alert id>` in the plugin's state holds the
// ticket's id: an event delivered twice opens one ticket, and a failed run
// keeps no half-made mapping.
import { call, failed, invalidInput, log, plugin } from './levelhost.js';
import { deleteKey, getJson, setJson } from './levelhost-state.js';

async function open(alert) {
  const key = `alert:${alert.id}`;
  const known = getJson(key);
  if (known !== undefined && known !== null) return { ticket: known, opened: false };
  const created = await call('POST', 'https://ticketing/tickets', {
    summary: `${alert.name} on ${alert.device_hostname}`,
    details: alert.description ?? '',
    severity: alert.severity ?? '',
    device: alert.device_hostname ?? '',
  });
  if (created === null || typeof created !== 'object' || created.id === undefined) {
    throw failed(`the ticketing system's answer has no ticket id: ${JSON.stringify(created)}`);
  }
  const ticket = String(created.id);
  setJson(key, ticket);
  log.info('opened a ticket', { alert: alert.id, ticket });
  return { ticket, opened: true };
}

async function close(alert) {
  const key = `alert:${alert.id}`;
  const ticket = getJson(key);
  if (ticket === undefined || ticket === null) return { ticket: null, closed: false };
  await call('POST', `https://ticketing/tickets/${ticket}/close`, {
    resolution: `Level resolved the alert ${alert.name}`,
  });
  deleteKey(key);
  log.info('closed a ticket', { alert: alert.id, ticket });
  return { ticket, closed: true };
}

export const handler = plugin(async (input) => {
  const event = input.event;
  if (!event || typeof event.event_type !== 'string') throw invalidInput('the input has no Level event');
  const alert = event.data ?? {};
  if (event.event_type === 'alert_active') return open(alert);
  if (event.event_type === 'alert_resolved') return close(alert);
  return { ignored: event.event_type };
});
