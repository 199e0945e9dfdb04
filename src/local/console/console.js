// The local console: polls /sim/* and /dev/transcript once a second and renders them; the say
// box posts to /dev/say. The page arrives with the state already rendered by the server
// (src/local/console.rs) in the same markup, which the first poll redraws unchanged. The code
// typed for a disarm goes in the request body only and the input is cleared at once.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  let account = null;

  // The Contact ID names, from the server's one table.
  let contactIds = {};

  async function get(path) {
    const r = await fetch(path, { cache: 'no-store' });
    if (!r.ok) throw new Error(path + ': ' + r.status);
    return r.json();
  }

  async function post(path, body) {
    const r = await fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body === undefined ? {} : body),
      cache: 'no-store',
    });
    const json = await r.json().catch(() => null);
    return { ok: r.ok, status: r.status, json };
  }

  function item(text, cls) {
    const li = document.createElement('li');
    if (cls) li.className = cls;
    li.textContent = text;
    return li;
  }

  // The time of day of the stack's UTC times (`2026-01-05T09:30:00.123Z`), as the server
  // renders the first paint: read off the text, which no locale can change.
  function time(at) {
    return at ? String(at).slice(11, 19) : '';
  }

  function words(s) {
    return String(s).replace(/_/g, ' ');
  }

  function renderPanel(panels, now) {
    const accounts = [...new Set(panels.map((p) => p.account))];
    const sel = $('account');
    if (sel.options.length !== accounts.length) {
      sel.replaceChildren(...accounts.map((a) => new Option(a, a)));
    }
    if (!account || !accounts.includes(account)) account = accounts[0] || null;
    sel.value = account;
    const mine = panels.filter((p) => p.account === account).map((p) => p.panel);
    const box = $('panel');
    box.replaceChildren();
    // Zones are re-drawn only when they change, so a focused button keeps its focus.
    const zoneKey = account + JSON.stringify(mine.map((p) => [p.id, p.zones]));
    const zones = $('zones');
    const redrawZones = zones.dataset.key !== zoneKey;
    if (redrawZones) {
      zones.dataset.key = zoneKey;
      zones.replaceChildren();
    }
    mine.forEach((p) => {
      const dl = document.createElement('dl');
      const add = (k, v) => {
        const dt = document.createElement('dt'); dt.textContent = k;
        const dd = document.createElement('dd'); dd.textContent = v;
        dl.append(dt, dd);
      };
      add('Panel', p.name + ' (' + p.id + ')');
      add('State', words(p.arm_state));
      add('Phase', words(p.phase) + (p.delay_remaining_s ? ' · ' + p.delay_remaining_s + ' s left' : ''));
      add('Delays', 'exit ' + p.exit_delay_s + ' s, entry ' + p.entry_delay_s + ' s');
      const alarms = Object.entries(p.alarms || {}).filter(([, v]) => v === true).map(([k]) => words(k)).sort();
      add('Siren', alarms.length ? 'sounding: ' + alarms.join(', ') : 'off');
      add('Trouble', (p.trouble || []).length ? p.trouble.map(words).join(', ') : 'none');
      add('Online', p.online ? 'yes' : 'no');
      box.append(dl);
      box.dataset.state = p.arm_state;
      (redrawZones ? p.zones || [] : []).forEach((z) => {
        const li = document.createElement('li');
        li.dataset.zone = z.id;
        const label = document.createElement('span');
        label.textContent = z.name + ' (#' + z.number + ', ' + words(z.kind) + '): ' +
          (z.open ? 'open' : 'closed') + (z.bypassed ? ', bypassed' : '');
        const b = document.createElement('button');
        b.type = 'button';
        b.textContent = z.open ? 'Close' : 'Open';
        b.setAttribute('aria-label', (z.open ? 'Close ' : 'Open ') + z.name);
        b.addEventListener('click', async () => {
          await post('/sim/panels/' + encodeURIComponent(p.id) + '/zones/' +
            encodeURIComponent(z.id) + '/' + (z.open ? 'close' : 'open'));
          await poll();
        });
        li.append(label, ' ', b);
        zones.append(li);
      });
    });
    $('panel').dataset.now = now || '';
  }

  function renderMonitoring(events, dispatches) {
    $('events').replaceChildren(...events.filter((e) => e.account === account).slice().reverse().map((e) => {
      // Which transmitter's line carried it (docs/panel-api.md, "Merging the two paths").
      const li = item(time(e.at) + ' · ' + e.code + ' ' + (contactIds[e.code] || 'event') +
        (e.qualifier === 3 ? ' (restore)' : '') +
        (e.user != null ? ' · user ' + e.user : '') + (e.zone != null ? ' · zone ' + e.zone : '') +
        ' · via ' + words(e.path) + (e.merged ? ' · merged: already dispatched' : '') +
        (e.cleared_at != null ? ' · cleared: the panel cloud reported at ' + time(e.cleared_at) : ''),
      e.merged ? 'merged' : (e.code === '121' ? 'alert' : ''));
      li.dataset.code = e.code;
      li.dataset.path = e.path;
      return li;
    }));
    $('dispatches').replaceChildren(...dispatches.filter((d) => d.account === account).slice().reverse().map((d) => {
      const li = item(time(d.at) + ' · ' + words(d.reason) + (d.user != null ? ' · user ' + d.user : '') +
        ' · ' + d.why + (d.cancelled ? ' (cancelled)' : ''), d.reason === 'duress' ? 'alert' : '');
      li.dataset.reason = d.reason;
      return li;
    }));
  }

  function renderNotifications(list) {
    $('notifications').replaceChildren(...list.filter((n) => n.account === account).slice().reverse()
      .map((n) => item(time(n.at) + ' · ' + n.message)));
  }

  function renderTranscript(entries) {
    const mine = entries.filter((e) => e.account === account);
    const ol = $('transcript');
    // Redrawn only when it changes: it is a live region, and a redraw would be read out again.
    const key = account + ':' + mine.length + ':' + JSON.stringify(mine[mine.length - 1] || null);
    if (ol.dataset.key === key) return;
    ol.dataset.key = key;
    ol.replaceChildren(...mine.slice().reverse().flatMap((e) => [
      item(e.speech != null ? e.assistant + ': ' + e.speech : 'Error: ' + e.error, 'reply'),
      item('You: ' + e.assistant + ', ' + e.said + '.', 'you'),
    ]));
  }

  function faultWords(mode) {
    const option = [...$('fault').options].find((o) => o.value === mode);
    return option ? option.textContent : words(mode);
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const [panels, notes, events, dispatches, fault, transcript] = await Promise.all([
        get('/sim/panels'), get('/sim/notifications'), get('/sim/monitoring'),
        get('/sim/monitoring/dispatches'), get('/sim/faults'), get('/dev/transcript'),
      ]);
      renderPanel(panels.panels, panels.now);
      renderNotifications(notes);
      renderMonitoring(events, dispatches);
      renderTranscript(transcript.entries);
      const state = 'Panel cloud API now: ' + faultWords(fault.mode || 'none');
      if ($('fault-state').textContent !== state) $('fault-state').textContent = state;
      document.body.dataset.polled = String(Number(document.body.dataset.polled || 0) + 1);
    } catch (e) {
      $('fault-state').textContent = 'Could not reach the local stack: ' + e.message;
    } finally {
      polling = false;
    }
  }

  function wire() {
    $('account').addEventListener('change', (ev) => { account = ev.target.value; poll(); });
    document.querySelectorAll('[data-advance]').forEach((b) => {
      b.addEventListener('click', async () => {
        await post('/sim/clock/advance', { seconds: Number(b.dataset.advance) });
        await poll();
      });
    });
    $('fault-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const mode = $('fault').value;
      await post('/sim/faults', mode === 'slow' ? { mode, delay_ms: 2000 } : { mode });
      await poll();
    });
    $('say-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const pin = $('pin').value;
      $('pin').value = '';
      const [command, mode] = $('command').value.split(' ');
      const body = {
        account,
        assistant: $('assistant').value,
        command,
        bypass: $('bypass').checked,
      };
      if (mode) body.mode = mode;
      if (command === 'disarm' && pin) body.pin = pin;
      // What was said and answered comes back through /dev/transcript, with `alarm-skill say`'s.
      await post('/dev/say', body);
      await poll();
    });
  }

  document.addEventListener('DOMContentLoaded', () => {
    contactIds = JSON.parse($('events').dataset.names || '{}');
    wire();
    poll();
    setInterval(poll, 1000);
  });
}());
