// alert-to-chat: posts each Level alert that becomes active to a chat
// channel through the `chat` connection (a Teams or Slack incoming webhook,
// whose secret URL only the host holds). Any other event posts nothing; a
// chat that answers an error fails the run.
import { call, invalidInput, log, plugin } from './levelhost.js';

function message(alert) {
  const text = `[${alert.severity ?? ''}] ${alert.name ?? ''} on ${alert.device_hostname ?? ''}`;
  return alert.description ? `${text}: ${alert.description}` : text;
}

export const handler = plugin(async (input) => {
  const event = input.event;
  if (!event || typeof event.event_type !== 'string') throw invalidInput('the input has no Level event');
  if (event.event_type !== 'alert_active') return { posted: false, event_type: event.event_type };
  const text = message(event.data ?? {});
  await call('POST', 'https://chat/', { text });
  log.info('posted the alert', { alert: event.data?.name ?? '' });
  return { posted: true, text };
});
