// nexusd support page. Plain DOM, no dependencies, nothing loaded from elsewhere. Every value from the API is
// put on the page as text (textContent / text nodes), never as HTML.
'use strict';

const KEY_STORAGE = 'nexusd.apiKey';
const PAGE_SIZE = 20;

// ---------- small helpers ----------

/** el('a', {href: '#/x', class: 'y'}, 'text', child): children that are strings become text nodes. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'onclick' || k === 'onsubmit' || k === 'onchange') node.addEventListener(k.slice(2), v);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replaces a node's children, skipping absent ones (replaceChildren would print them as "null"). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false && c !== ''));
}

function fmtTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  if (isNaN(d.getTime())) return String(ts);
  return d.toISOString().replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC');
}

function personHref(id) { return '#/person/' + encodeURIComponent(id); }
function groupHref(id) { return '#/group/' + encodeURIComponent(id); }
function eventHref(id) { return '#/event/' + encodeURIComponent(id); }
function entityHref(kind, id) { return kind === 'ENTITY_KIND_GROUP' ? groupHref(id) : personHref(id); }

function setStatus(text, isError) {
  const s = document.getElementById('status');
  s.textContent = text || '';
  s.className = isError ? 'error' : '';
}

function table(headers, rows, testid) {
  return el('table', {'data-testid': testid},
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', {scope: 'col'}, h)))),
    el('tbody', {}, rows));
}

function idList(ids) {
  return (ids || []).map((i) => el('span', {class: 'tag mono'}, i.type + ': ' + i.value));
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = {accept: 'application/json'};
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.authorization = 'Bearer ' + key;
  const resp = await fetch(url, {headers, credentials: 'omit'});
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const code = body && body.code ? body.code : 'HTTP_' + resp.status;
    const msg = body && body.message ? body.message : resp.statusText;
    if (resp.status === 401) showKeyPanel();
    throw new ApiError(resp.status, code, msg);
  }
  return body;
}

function showError(where, err) {
  const text = err instanceof ApiError ? err.code + ': ' + err.message : String(err);
  if (where) where.replaceChildren(el('p', {class: 'error-text', role: 'alert'}, text));
  setStatus(text, true);
}

// ---------- key panel ----------

function showKeyPanel() {
  const p = document.getElementById('key-panel');
  p.hidden = false;
  document.getElementById('key-input').focus();
}

function initKeyPanel() {
  document.getElementById('key-button').addEventListener('click', () => {
    const p = document.getElementById('key-panel');
    p.hidden = !p.hidden;
    if (!p.hidden) document.getElementById('key-input').focus();
  });
  document.getElementById('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = document.getElementById('key-input').value.trim();
    if (v) sessionStorage.setItem(KEY_STORAGE, v);
    document.getElementById('key-input').value = '';
    document.getElementById('key-panel').hidden = true;
    setStatus(v ? 'Key set for this tab.' : '');
    route();
  });
  document.getElementById('key-clear').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    setStatus('Key forgotten.');
  });
}

// ---------- paged lists ----------

/**
 * A list that loads pages with a keyset token: `load(token)` returns {items, next}; `render(item)` returns a row.
 * The "Load more" button is a real button (keyboard reachable); it disappears on the last page.
 */
function pagedList(container, load, render, testid) {
  const more = el('button', {type: 'button', 'data-testid': testid + '-more'}, 'Load more');
  const count = el('span', {class: 'muted', 'data-testid': testid + '-count'});
  let token = '';
  let shown = 0;
  async function next() {
    more.disabled = true;
    try {
      const page = await load(token);
      for (const item of page.items) container.append(render(item));
      shown += page.items.length;
      count.textContent = shown + ' shown' + (page.next ? '' : ' (all)');
      token = page.next || '';
      more.hidden = !token;
    } catch (err) {
      showError(null, err);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener('click', next);
  return {controls: el('p', {}, more, ' ', count), start: next};
}

// ---------- pages ----------

async function searchPage(q) {
  const main = document.getElementById('main');
  document.getElementById('search-input').value = q;
  document.title = 'Search: ' + q + ' - nexusd';
  const persons = el('ul', {class: 'hits', 'data-testid': 'person-hits'});
  const groups = el('ul', {class: 'hits', 'data-testid': 'group-hits'});
  const renderHit = (h) => el('li', {},
    el('span', {class: 'score'}, 'score ' + Number(h.score).toFixed(2)),
    el('a', {href: entityHref(h.kind, h.entity_id), 'data-testid': 'hit'}, h.display_name || h.entity_id),
    h.email && h.email !== h.display_name ? el('span', {class: 'muted'}, ' ' + h.email) : null,
    el('div', {class: 'muted'}, 'matched ', idList(h.matched)),
  );
  const pl = pagedList(persons, async (token) => {
    const r = await api('/v1/persons:search', {query: q, page_size: PAGE_SIZE, page_token: token});
    if (!token && r.hits.length === 0) persons.append(el('li', {class: 'muted'}, 'No person matches.'));
    return {items: r.hits, next: r.next_page_token};
  }, renderHit, 'person-hits');
  const gl = pagedList(groups, async (token) => {
    const r = await api('/v1/groups:search', {query: q, page_size: PAGE_SIZE, page_token: token});
    if (!token && r.hits.length === 0) groups.append(el('li', {class: 'muted'}, 'No company matches.'));
    return {items: r.hits, next: r.next_page_token};
  }, renderHit, 'group-hits');
  fill(main,
    el('h1', {}, 'Results for ', el('q', {}, q)),
    el('div', {class: 'cols'},
      el('section', {}, el('h2', {}, 'Persons'), persons, pl.controls),
      el('section', {}, el('h2', {}, 'Companies'), groups, gl.controls)));
  await Promise.all([pl.start(), gl.start()]);
}

function identitiesTable(ids) {
  return table(['Type', 'Value', 'Source', 'First seen', 'Last seen'], (ids || []).map((i) => el('tr', {},
    el('td', {}, i.type), el('td', {class: 'mono'}, i.value), el('td', {}, i.source),
    el('td', {}, fmtTime(i.occurred_at)), el('td', {}, fmtTime(i.last_seen_at)))), 'identities');
}

function traitsTable(traits) {
  return table(['Trait', 'Value', 'Source', 'As of'], (traits || []).map((t) => el('tr', {},
    el('td', {}, t.name), el('td', {}, t.text_value), el('td', {}, t.source), el('td', {}, fmtTime(t.occurred_at)))),
  'traits');
}

/** Timeline with type/source/date filters and keyset paging. `path` is the API route; extra params are fixed. */
function timelineSection(path, extra, selfKind) {
  const section = el('section', {'aria-label': 'Timeline'});
  const type = el('input', {name: 'event_type', placeholder: 'any', size: 12});
  const source = el('input', {name: 'source', placeholder: 'any', size: 12});
  const after = el('input', {name: 'after', type: 'date'});
  const before = el('input', {name: 'before', type: 'date'});
  const body = el('tbody', {'data-testid': 'timeline-rows'});
  const listHolder = el('div', {});
  const form = el('form', {class: 'filters', 'data-testid': 'timeline-filters'},
    el('label', {}, 'Event type', type), el('label', {}, 'Source', source),
    el('label', {}, 'From (UTC)', after), el('label', {}, 'Before (UTC)', before),
    el('button', {type: 'submit'}, 'Filter'));
  function start() {
    body.replaceChildren();
    const params = Object.assign({}, extra, {
      event_type: type.value.trim(), source: source.value.trim(),
      occurred_after: after.value ? after.value + 'T00:00:00Z' : '',
      occurred_before: before.value ? before.value + 'T00:00:00Z' : '',
      include_participants: 'true', page_size: PAGE_SIZE,
    });
    const pl = pagedList(body, async (token) => {
      const r = await api(path, Object.assign({}, params, {page_token: token}));
      return {items: r.events, next: r.next_page_token};
    }, (e) => el('tr', {},
      el('td', {}, fmtTime(e.occurred_at)),
      el('td', {}, el('a', {href: eventHref(e.event_id)}, e.event_name)),
      el('td', {}, e.event_type), el('td', {}, e.source),
      el('td', {}, (e.roles || []).join(', ')),
      el('td', {}, (e.participants || []).map((p) => el('span', {class: 'tag'},
        el('a', {href: entityHref(p.kind, p.entity_id)}, p.display_name || p.entity_id),
        p.role ? ' (' + p.role + ')' : '')))), 'timeline');
    fill(listHolder,
      el('table', {'data-testid': 'timeline'},
        el('thead', {}, el('tr', {}, ['When', 'Event', 'Type', 'Source', selfKind === 'group' ? 'Company role' : 'Role',
          'Others'].map((h) => el('th', {scope: 'col'}, h)))), body),
      pl.controls);
    return pl.start();
  }
  form.addEventListener('submit', (ev) => { ev.preventDefault(); start(); });
  section.append(form, listHolder);
  return {section, start};
}

function historySection(path) {
  const holder = el('div', {'data-testid': 'history'}, el('p', {class: 'muted'}, 'Loading...'));
  (async () => {
    try {
      const h = await api(path);
      const rows = (h.merges || []).map((m) => el('tr', {},
        el('td', {}, fmtTime(m.merged_at)), el('td', {class: 'mono'}, m.absorbed_id),
        el('td', {class: 'mono'}, m.surviving_id), el('td', {}, String(m.absorbed_identifier_count)),
        el('td', {}, m.event_id ? el('a', {href: eventHref(m.event_id)}, m.event_id) : '')));
      fill(holder,
        el('p', {}, 'Created ', fmtTime(h.created_at), h.created_by_event_id ? ' by event ' : '',
          h.created_by_event_id ? el('a', {href: eventHref(h.created_by_event_id)}, h.created_by_event_id) : ''),
        rows.length ? table(['Merged at', 'Absorbed id', 'Into', 'Identifiers', 'Event'], rows, 'merges')
          : el('p', {class: 'muted'}, 'No merges: this record was never combined with another.'));
    } catch (err) {
      showError(holder, err);
    }
  })();
  return holder;
}

/** "Why are these two linked": pick two of the entity's identifiers, ask ExplainPersonLink/ExplainGroupLink. */
function explainSection(explainPath, ids) {
  const options = (ids || []).map((i, n) => el('option', {value: String(n)}, i.type + ': ' + i.value));
  const a = el('select', {name: 'a', 'data-testid': 'explain-a'}, options.map((o) => o.cloneNode(true)));
  const b = el('select', {name: 'b', 'data-testid': 'explain-b'}, options.map((o) => o.cloneNode(true)));
  if (ids && ids.length > 1) b.value = '1';
  const result = el('div', {'data-testid': 'explain-result', 'aria-live': 'polite'});
  const form = el('form', {class: 'filters', 'data-testid': 'explain-form'},
    el('label', {}, 'Identifier A', a), el('label', {}, 'Identifier B', b),
    el('button', {type: 'submit', class: 'primary', 'data-testid': 'explain-button'}, 'Explain'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const x = ids[Number(a.value)], y = ids[Number(b.value)];
    result.replaceChildren(el('p', {class: 'muted'}, 'Asking...'));
    try {
      const r = await api(explainPath, {a_type: x.type, a_value: x.value, b_type: y.type, b_value: y.value});
      const steps = (r.path || []).map((s) => el('li', {},
        el('span', {class: 'mono'}, s.from.type + ': ' + s.from.value), ' \u2192 ',
        el('span', {class: 'mono'}, s.to.type + ': ' + s.to.value), ' seen together in ',
        el('a', {href: eventHref(s.event_id)}, s.event_id), ' (' + s.source + ', ' + fmtTime(s.occurred_at) + ')'));
      fill(result, el('div', {class: 'explain-result'},
        el('p', {class: r.linked ? 'linked' : 'notlinked'}, r.linked ? 'Linked' : 'Not linked'),
        el('p', {}, r.explanation),
        steps.length ? el('ol', {}, steps) : null,
        (r.blocked_by || []).length ? el('p', {}, (r.blocked_by || []).length + ' quarantined edge(s): ' +
          r.blocked_by.map((q) => q.reason).join('; ')) : null));
    } catch (err) {
      showError(result, err);
    }
  });
  if (!ids || ids.length < 2) {
    return el('p', {class: 'muted'}, 'Only one identifier: nothing to explain.');
  }
  return el('div', {}, form, result);
}

async function personPage(id) {
  const main = document.getElementById('main');
  main.replaceChildren(el('p', {class: 'muted'}, 'Loading...'));
  const prof = await api('/v1/persons/' + encodeURIComponent(id) + '/profile');
  const p = prof.person;
  if (p.redirected && p.person_id !== id) {
    history.replaceState(null, '', personHref(p.person_id));
  }
  const title = p.name || p.email || p.person_id;
  document.title = title + ' - nexusd';
  const companies = (prof.memberships || []).map((m) => el('tr', {},
    el('td', {}, el('a', {href: groupHref(m.group_id)}, m.group_name || m.group_domain || m.group_id)),
    el('td', {}, m.group_domain), el('td', {}, m.role), el('td', {}, m.source), el('td', {}, fmtTime(m.established_at))));
  const tl = timelineSection('/v1/persons/' + encodeURIComponent(p.person_id) + '/timeline', {}, 'person');
  fill(main,
    el('h1', {'data-testid': 'entity-title'}, title),
    el('p', {class: 'muted'}, el('span', {class: 'mono'}, p.person_id),
      p.redirected ? ' (you asked for ' + p.requested_id + ', which was merged into this person)' : '',
      ' \u00b7 ' + prof.event_count + ' events',
      p.title ? ' \u00b7 ' + p.title : '', p.timezone ? ' \u00b7 ' + p.timezone : ''),
    el('h2', {}, 'Identities'), identitiesTable(p.identifiers),
    el('h2', {}, 'Traits'), traitsTable(p.traits),
    el('h2', {}, 'Companies'),
    companies.length ? table(['Company', 'Domain', 'Role', 'Source', 'Since'], companies, 'companies')
      : el('p', {class: 'muted', 'data-testid': 'companies'}, 'No memberships.'),
    prof.memberships_truncated ? el('p', {class: 'muted'}, 'Showing the newest 100.') : null,
    el('h2', {}, 'Timeline'), tl.section,
    el('h2', {}, 'Why are these linked?'), explainSection('/v1/persons:explain', p.identifiers),
    el('h2', {}, 'Merge history'), historySection('/v1/persons/' + encodeURIComponent(p.person_id) + '/history'),
    (p.merged_ids || []).length ? el('p', {class: 'muted'}, 'Earlier ids: ', p.merged_ids.join(', ')) : null);
  await tl.start();
}

async function groupPage(id) {
  const main = document.getElementById('main');
  main.replaceChildren(el('p', {class: 'muted'}, 'Loading...'));
  const prof = await api('/v1/groups/' + encodeURIComponent(id) + '/profile');
  const g = prof.group;
  if (g.redirected && g.group_id !== id) history.replaceState(null, '', groupHref(g.group_id));
  const title = g.company_name || g.domain || g.group_id;
  document.title = title + ' - nexusd';
  const members = (prof.members || []).map((m) => el('tr', {},
    el('td', {}, el('a', {href: personHref(m.person_id)}, m.person_name || m.person_email || m.person_id)),
    el('td', {}, m.person_email), el('td', {}, m.role), el('td', {}, m.source), el('td', {}, fmtTime(m.established_at))));
  const tl = timelineSection('/v1/groups/' + encodeURIComponent(g.group_id) + '/timeline',
    {include_members: 'true'}, 'group');
  fill(main,
    el('h1', {'data-testid': 'entity-title'}, title),
    el('p', {class: 'muted'}, el('span', {class: 'mono'}, g.group_id), ' \u00b7 ' + prof.event_count + ' events',
      g.industry ? ' \u00b7 ' + g.industry : '', g.company_size ? ' \u00b7 ' + g.company_size : ''),
    el('h2', {}, 'Identities'), identitiesTable(g.identifiers),
    el('h2', {}, 'Traits'), traitsTable(g.traits),
    el('h2', {}, 'Members'),
    members.length ? table(['Person', 'Email', 'Role', 'Source', 'Since'], members, 'members')
      : el('p', {class: 'muted'}, 'No members.'),
    prof.members_truncated ? el('p', {class: 'muted'}, 'Showing the newest 100.') : null,
    el('h2', {}, 'Activity (the company and its members)'), tl.section,
    el('h2', {}, 'Why are these linked?'), explainSection('/v1/groups:explain', g.identifiers),
    el('h2', {}, 'Merge history'), historySection('/v1/groups/' + encodeURIComponent(g.group_id) + '/history'));
  await tl.start();
}

async function eventPage(id) {
  const main = document.getElementById('main');
  main.replaceChildren(el('p', {class: 'muted'}, 'Loading...'));
  const e = await api('/v1/events/' + encodeURIComponent(id));
  document.title = e.event_name + ' - nexusd';
  const rows = (e.participants || []).map((p) => el('tr', {},
    el('td', {}, p.kind === 'ENTITY_KIND_GROUP' ? 'company' : 'person'),
    el('td', {}, el('a', {href: entityHref(p.kind, p.entity_id)}, p.display_name || p.entity_id)),
    el('td', {}, p.role), el('td', {}, idList(p.identifiers))));
  fill(main,
    el('h1', {'data-testid': 'entity-title'}, e.event_name),
    el('p', {class: 'muted'}, el('span', {class: 'mono'}, e.event_id), ' \u00b7 ' + fmtTime(e.occurred_at) +
      ' \u00b7 ' + e.event_type + ' \u00b7 ' + e.source,
      e.value !== undefined ? ' \u00b7 ' + e.value + ' ' + (e.value_unit || '') : ''),
    e.event_description ? el('p', {}, e.event_description) : null,
    el('h2', {}, 'Participants'),
    rows.length ? table(['Kind', 'Who', 'Role', 'Identifiers in this event'], rows, 'participants')
      : el('p', {class: 'muted'}, 'No resolved participants (yet).'));
}

// ---------- routing ----------

async function route() {
  const hash = window.location.hash || '#/';
  const main = document.getElementById('main');
  setStatus('');
  try {
    let m;
    if ((m = hash.match(/^#\/search\?q=(.*)$/))) await searchPage(decodeURIComponent(m[1]));
    else if ((m = hash.match(/^#\/person\/(.+)$/))) await personPage(decodeURIComponent(m[1]));
    else if ((m = hash.match(/^#\/group\/(.+)$/))) await groupPage(decodeURIComponent(m[1]));
    else if ((m = hash.match(/^#\/event\/(.+)$/))) await eventPage(decodeURIComponent(m[1]));
    else {
      main.replaceChildren(el('p', {class: 'muted'}, 'Search for a person or a company by any identifier (email, ' +
        'phone, user id, domain) or a name, or a fragment of one. Press / to focus the search box.'));
    }
  } catch (err) {
    showError(main, err);
  }
  main.focus({preventScroll: true});
  document.body.setAttribute('data-ready', hash);
}

function init() {
  initKeyPanel();
  document.getElementById('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = document.getElementById('search-input').value.trim();
    if (q.length < 2) { setStatus('Type at least 2 characters.', true); return; }
    const target = '#/search?q=' + encodeURIComponent(q);
    if (window.location.hash === target) route(); else window.location.hash = target;
  });
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA');
    if (ev.key === '/' && !typing) {
      ev.preventDefault();
      document.getElementById('search-input').focus();
    }
  });
  window.addEventListener('hashchange', route);
  route();
}

document.addEventListener('DOMContentLoaded', init);
