// The household app. No framework, no build step. The access token lives in `token` only
// (memory): a reload signs in again. PINs go in request bodies only, and every PIN input is
// cleared after a submit, whatever the outcome.
'use strict';

(function () {
  let config = null;
  let token = null;
  // Set by the management API's step-up (401 reauthentication_required): the next sign-in
  // must authenticate afresh, even where the issuer still has a session of its own.
  let fresh = false;
  const $ = (id) => document.getElementById(id);

  function show(el, on) { el.hidden = !on; }

  function say(text) {
    $('status').textContent = text;
  }

  function fail(text) {
    const e = $('error');
    e.textContent = text;
    show(e, Boolean(text));
  }

  function b64url(bytes) {
    let s = '';
    bytes.forEach((b) => { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function randomString() {
    return b64url(crypto.getRandomValues(new Uint8Array(32)));
  }

  function redirectUri() {
    return config.redirect_uri || (location.origin + location.pathname);
  }

  async function signIn() {
    const verifier = randomString();
    const state = randomString();
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
    // Only the PKCE verifier and state survive the redirect, and only until the code is redeemed.
    sessionStorage.setItem('pkce', JSON.stringify({ verifier, state }));
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: config.client_id,
      redirect_uri: redirectUri(),
      scope: config.scope,
      state,
      code_challenge: b64url(new Uint8Array(digest)),
      code_challenge_method: 'S256',
    });
    if (fresh) {
      // Cognito's managed login honours prompt=login; max_age=0 asks the same of an OIDC
      // provider. Without them a live hosted-UI session would sign in without a password.
      q.set('prompt', 'login');
      q.set('max_age', '0');
    }
    location.assign(config.authorize_url + '?' + q.toString());
  }

  async function redeem(params) {
    const saved = JSON.parse(sessionStorage.getItem('pkce') || 'null');
    sessionStorage.removeItem('pkce');
    // The code leaves the address bar and the history entry at once.
    history.replaceState(null, '', location.pathname);
    if (params.get('error')) {
      throw new Error('Sign-in was refused: ' + params.get('error'));
    }
    if (!saved || saved.state !== params.get('state')) {
      throw new Error('Sign-in did not come back from this page; sign in again.');
    }
    const body = new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: redirectUri(),
      client_id: config.client_id,
      code_verifier: saved.verifier,
    });
    const resp = await fetch(config.token_url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
      credentials: 'omit',
      cache: 'no-store',
    });
    const json = await resp.json().catch(() => ({}));
    if (!resp.ok || !json.access_token) {
      throw new Error('Sign-in failed (' + (json.error || resp.status) + '); sign in again.');
    }
    token = json.access_token;
    showAccount(accountName(token));
  }

  // Who is signed in, for the header: Cognito's `username` (what the admin typed at sign-in),
  // else `sub`. Read from the token the issuer just gave this page, for display only: the API
  // checks the token itself. The token never reaches the page's text.
  function accountName(jwt) {
    try {
      const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      const name = claims.username || claims.sub;
      return typeof name === 'string' ? name : '';
    } catch (_) {
      return '';
    }
  }

  function showAccount(name) {
    const e = $('account');
    e.textContent = name ? 'Signed in as ' + name : '';
    show(e, Boolean(name));
  }

  async function api(method, path, body) {
    const init = {
      method,
      headers: { authorization: 'Bearer ' + token },
      credentials: 'omit',
      cache: 'no-store',
    };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch('/v1/household' + path, init);
    const text = await resp.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    if (resp.status === 401 && json && json.error === 'reauthentication_required') {
      fresh = true;
      signedOut('Confirm it\'s you: sign in again, then repeat the change. Changing voice codes '
        + 'or disarm settings needs a recent sign-in.');
      $('sign-in').focus();
    } else if (resp.status === 401) {
      signedOut('Your sign-in has expired. Sign in again.');
    }
    return { ok: resp.ok, status: resp.status, json };
  }

  function explain(r) {
    const message = (r.json && r.json.message) || ('error ' + r.status);
    switch (r.json && r.json.error) {
      case 'invalid_format':
      case 'too_common':
      case 'too_similar':
        return 'Not saved: ' + message + '.';
      case 'rate_limited':
        return 'Not saved: too many code changes this hour. Try again later.';
      case 'forbidden':
        return 'Only the household admin can manage voice codes.';
      default:
        return 'That did not work: ' + message + '.';
    }
  }

  function memberItem(m) {
    const li = document.getElementById('member-template').content.firstElementChild.cloneNode(true);
    const heading = li.querySelector('.member-name');
    heading.id = 'member-' + m.id;
    heading.textContent = m.name;
    li.setAttribute('aria-labelledby', heading.id);
    li.querySelector('.member-number').textContent = String(m.user_number);
    li.querySelector('.member-voice').textContent = m.has_voice_pin ? 'set' : 'not set';
    li.querySelectorAll('form.code').forEach((form) => {
      const slot = form.dataset.slot;
      const what = slot === 'voice-pin' ? 'voice PIN' : 'duress PIN';
      form.setAttribute('aria-label', m.name + ': ' + what);
      const input = form.querySelector('input.pin');
      input.id = 'pin-' + slot + '-' + m.id;
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const pin = input.value;
        input.value = '';
        await change('PUT', m, slot, { pin }, what + ' saved for ' + m.name + '.');
        input.value = '';
      });
      form.querySelector('button.delete').addEventListener('click', async () => {
        input.value = '';
        await change('DELETE', m, slot, undefined, what + ' deleted for ' + m.name + '.');
      });
    });
    return li;
  }

  async function change(method, m, slot, body, done) {
    fail('');
    say('Saving…');
    document.querySelectorAll('.form-msg').forEach((e) => { e.textContent = ''; });
    const r = await api(method, '/members/' + encodeURIComponent(m.id) + '/' + slot, body);
    // Signed out by the answer: what the sign-in page says stays on screen.
    if (!token) return;
    const text = r.ok ? done.charAt(0).toUpperCase() + done.slice(1) : explain(r);
    if (r.ok) {
      say(text);
    } else {
      say('');
      fail(text);
    }
    await refresh();
    // Also next to the form, where a phone's screen is.
    const heading = document.getElementById('member-' + m.id);
    const form = heading && heading.parentElement.querySelector('form[data-slot="' + slot + '"]');
    if (form) {
      const msg = form.querySelector('.form-msg');
      msg.textContent = text;
      msg.classList.toggle('bad', !r.ok);
    }
  }

  function renderMembers(list) {
    const ul = $('members');
    ul.replaceChildren(...list.map(memberItem));
    if (list.length === 0) {
      const li = document.createElement('li');
      li.textContent = 'No members yet: they come from the panel\'s users.';
      ul.append(li);
    }
  }

  function renderLockout(l) {
    let text;
    if (l.hard_locked) {
      text = 'Voice disarm is locked until you reset it (' + l.consecutive_failures + ' wrong codes in a row).';
    } else if (l.locked) {
      text = 'Voice disarm is locked for a while after ' + l.consecutive_failures + ' wrong codes in a row.';
    } else if (l.consecutive_failures > 0) {
      text = 'Not locked. ' + l.consecutive_failures + ' wrong code(s) in a row so far.';
    } else {
      text = 'Not locked. No wrong codes.';
    }
    $('lockout-state').textContent = text;
  }

  function renderAudit(entries) {
    const ol = $('audit');
    ol.replaceChildren(...entries.map((e) => {
      const li = document.createElement('li');
      const t = document.createElement('time');
      t.dateTime = e.at;
      t.textContent = new Date(e.at).toLocaleString();
      li.append(t, ' ', e.message);
      return li;
    }));
  }

  function renderSettings(s) {
    $('pinless').value = s.pinless_disarm;
    $('google').checked = Boolean(s.google_enabled);
  }

  async function refresh() {
    if (!token) return;
    const [members, lockout, settings, audit] = await Promise.all([
      api('GET', '/members'),
      api('GET', '/lockout'),
      api('GET', '/settings'),
      api('GET', '/audit?limit=20'),
    ]);
    if (!token) return;
    const bad = [members, lockout, settings, audit].find((r) => !r.ok);
    if (bad) {
      fail(explain(bad));
      return;
    }
    renderMembers(members.json.members);
    renderLockout(lockout.json);
    renderSettings(settings.json);
    renderAudit(audit.json.entries);
    document.body.dataset.ready = 'true';
  }

  function signedOut(message) {
    token = null;
    showAccount('');
    delete document.body.dataset.ready;
    show($('signed-in'), false);
    show($('sign-out'), false);
    show($('signed-out'), true);
    say(message || '');
  }

  function wire() {
    $('sign-in').addEventListener('click', () => { signIn().catch((e) => fail(e.message)); });
    $('sign-out').addEventListener('click', () => signedOut('Signed out.'));
    $('refresh').addEventListener('click', () => refresh());
    $('sync').addEventListener('click', async () => {
      const r = await api('POST', '/members/sync');
      if (!token) return;
      if (r.ok) { say('Members taken from the panel.'); } else { fail(explain(r)); }
      await refresh();
    });
    $('reset-lockout').addEventListener('click', async () => {
      fail('');
      const r = await api('POST', '/lockout/reset');
      if (!token) return;
      if (r.ok) { say('Lockout reset: voice disarm works again.'); } else { fail(explain(r)); }
      await refresh();
    });
    $('settings').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      fail('');
      const r = await api('PUT', '/settings', {
        pinless_disarm: $('pinless').value,
        google_enabled: $('google').checked,
      });
      if (!token) return;
      if (r.ok) { say('Settings saved.'); } else { fail(explain(r)); }
      await refresh();
    });
  }

  async function start() {
    wire();
    const resp = await fetch('config.json', { cache: 'no-store', credentials: 'omit' });
    if (!resp.ok) {
      fail('Sign-in is not configured for this app (APP_OAUTH_CLIENT_ID).');
      return;
    }
    config = await resp.json();
    const params = new URLSearchParams(location.search);
    if (params.has('code') || params.has('error')) {
      try {
        await redeem(params);
      } catch (e) {
        signedOut();
        fail(e.message);
        return;
      }
      show($('signed-out'), false);
      show($('signed-in'), true);
      show($('sign-out'), true);
      say('Signed in.');
      await refresh();
      $('main').focus();
    } else {
      signedOut();
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    start().catch((e) => fail('Something went wrong: ' + e.message));
  });
}());
