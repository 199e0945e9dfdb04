// The console's "Echo devices" section: polls /dev/echo once a second and lists, newest first,
// what the household's Echo devices play for the account chosen above (an alert starting, with
// its length for a delay, or stopping). A script of its own, so the rest of the console can
// change without touching it.
'use strict';

(function () {
  function show(updates) {
    const account = document.getElementById('account').value;
    const mine = updates.filter((u) => u.account === account).slice().reverse();
    document.getElementById('echo').replaceChildren(...mine.map((u) => {
      const li = document.createElement('li');
      li.textContent = new Date(u.at).toLocaleTimeString() + ' · ' + u.says.join(' · ') +
        (u.playing ? '' : ' · now silent');
      li.dataset.says = u.says.join('|');
      return li;
    }));
  }

  async function pollEcho() {
    try {
      const r = await fetch('/dev/echo', { cache: 'no-store' });
      if (r.ok) show((await r.json()).updates);
    } catch (e) {
      // The console's main poll already says when the stack can't be reached.
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    pollEcho();
    setInterval(pollEcho, 1000);
  });
}());
