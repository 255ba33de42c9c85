// Real clients against a real nexusd (issue 18): the official Segment and RudderStack Node SDKs, unchanged except
// for their host, deliver identify/track/group/alias/page through a proxy that answers 503 to each SDK's first
// batch after nexusd stored it, so each SDK retries that batch for real. Then the query API must show exactly
// the merged persons, the group, the memberships and the timelines, with nothing written twice.
//
// Env: SDK_TEST_NEXUS_URL (http://127.0.0.1:PORT of a nexusd in open mode with an empty database).
// Run by scripts/sdk-test.sh, which starts nexusd and installs the SDKs (npm ci).
import assert from 'node:assert/strict'
import http from 'node:http'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { Analytics } = require('@segment/analytics-node')
const RudderAnalytics = require('@rudderstack/rudder-sdk-node')

const NEXUS = process.env.SDK_TEST_NEXUS_URL
if (!NEXUS) throw new Error('SDK_TEST_NEXUS_URL is not set (run scripts/sdk-test.sh)')

let failures = 0
function check(name, fn) {
  try {
    fn()
    console.log(`ok   ${name}`)
  } catch (e) {
    failures++
    console.log(`FAIL ${name}\n${e.message}`)
  }
}

async function call(method, path, { key, body } = {}) {
  const headers = {}
  if (key) headers.authorization = `Bearer ${key}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(NEXUS + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = text
  }
  return { status: res.status, json }
}

// ---- keys: an admin+read key for the checks, a key bound to source "web" (Segment SDK), an unbound ingest key
// (RudderStack SDK: writes --segment-source, default "segment").
async function createKey(adminKey, spec) {
  const r = await call('POST', '/v1/admin/keys', { key: adminKey, body: spec })
  assert.equal(r.status, 200, JSON.stringify(r.json))
  return r.json.secret
}
const adminKey = await createKey(undefined, { name: 'sdk-admin', scopes: ['admin', 'read'] }) // open mode ends here
const webKey = await createKey(adminKey, { name: 'segment-web', scopes: ['ingest'], sources: ['web'] })
const rudderKey = await createKey(adminKey, { name: 'rudder', scopes: ['ingest'] })

// ---- the proxy: forwards everything; the first POST /v1/batch of each SDK is stored by nexusd but answered 503.
const seen = [] // {sdk, status sent to the SDK, nexusd's status and body, headers}
const failedOnce = new Set()
const proxy = http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', async () => {
    const body = Buffer.concat(chunks)
    const sdk = String(req.headers['user-agent'] || '').startsWith('analytics-node-next') ? 'segment' : 'rudder'
    const headers = { ...req.headers }
    delete headers.host
    delete headers['content-length']
    delete headers.connection
    const upstream = await fetch(NEXUS + req.url, { method: req.method, headers, body })
    const text = await upstream.text()
    let status = upstream.status
    if (req.url === '/v1/batch' && !failedOnce.has(sdk)) {
      failedOnce.add(sdk)
      status = 503
    }
    seen.push({ sdk, url: req.url, status, upstream: upstream.status, body: text, headers: req.headers })
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(status === 503 ? '{"code":"UNAVAILABLE","message":"test proxy: pretend the database is down"}' : text)
  })
})
await new Promise((r) => proxy.listen(0, '127.0.0.1', r))
const PROXY = `http://127.0.0.1:${proxy.address().port}`

const t = (s) => new Date(`2026-06-01T10:00:${String(s).padStart(2, '0')}Z`)

// ---- Segment SDK: one batch of 6 messages, source "web".
const segment = new Analytics({ writeKey: webKey, host: PROXY, flushAt: 6, flushInterval: 200, maxRetries: 3 })
const segmentIds = []
segment.on('http_request', (r) => {
  if (segmentIds.length === 0) for (const m of JSON.parse(r.body).batch) segmentIds.push(m.messageId)
})
const segmentErrors = []
segment.on('error', (e) => segmentErrors.push(e))
segment.identify({ userId: 'seg-u1', anonymousId: 'seg-a1', timestamp: t(1),
  traits: { email: 'Seg.User@Example.com', name: 'Seg User', plan: 'pro', address: { city: 'Berlin' } } })
segment.track({ anonymousId: 'seg-a2', event: 'Viewed Pricing', timestamp: t(2) }) // anonymous only, for now
segment.alias({ userId: 'seg-u1', previousId: 'seg-a2', timestamp: t(3) }) // ... now it is seg-u1
segment.group({ userId: 'seg-u1', groupId: 'acme-1', timestamp: t(4),
  traits: { name: 'Acme', website: 'https://www.Acme.example/about', industry: 'Tools', employees: 50 } })
segment.track({ userId: 'seg-u1', event: 'Order Completed', timestamp: t(5),
  properties: { revenue: 42.5, currency: 'EUR', sku: 'X-1' } })
segment.page({ userId: 'seg-u1', name: 'Pricing', category: 'Docs', timestamp: t(6), properties: { path: '/pricing' } })
await segment.closeAndFlush({ timeout: 30000 })

// ---- RudderStack SDK: gzip + Basic auth, source "segment" (unbound key). An anonymous visitor (identify, group
// without userId, track) who then signs up: alias rud-a1 -> rud-u1.
const rudderBatches = []
const rudder = new RudderAnalytics(rudderKey, { dataPlaneUrl: PROXY, flushAt: 7, flushInterval: 200, logLevel: 'error' })
const rudderIds = []
const origEnqueue = rudder.enqueue.bind(rudder)
rudder.enqueue = (type, message, cb) => origEnqueue(type, message, (err, data) => {
  rudderBatches.push(err ? `error: ${err.message}` : 'ok')
  if (cb) cb(err, data)
})
const rudderMsg = (m) => {
  m.messageId = `rud-${rudderIds.length + 1}`
  rudderIds.push(m.messageId)
  return m
}
rudder.identify(rudderMsg({ anonymousId: 'rud-a1', timestamp: t(11),
  traits: { email: 'rud@example.com', phone: '+1 (415) 555-0100', title: 'CTO', tags: ['a', 'b'] } }))
rudder.group(rudderMsg({ anonymousId: 'rud-a1', groupId: 'acme-1', timestamp: t(12), traits: { domain: 'acme.example' } }))
rudder.track(rudderMsg({ anonymousId: 'rud-a1', event: 'Signed Up', timestamp: t(13), properties: { value: 3 } }))
rudder.alias(rudderMsg({ userId: 'rud-u1', previousId: 'rud-a1', timestamp: t(14) }))
rudder.page(rudderMsg({ userId: 'rud-u1', name: 'Home', timestamp: t(15), properties: { category: 'Landing' } }))
rudder.screen(rudderMsg({ userId: 'rud-u1', name: 'Settings', timestamp: t(16) }))
rudder.track(rudderMsg({ userId: 'rud-u1', event: 'Upgraded', timestamp: t(17), properties: { revenue: 10 } }))
await rudder.flush()
await new Promise((r) => setTimeout(r, 300))
proxy.close()

/// Each SDK's first batch was stored and answered 503; the SDK re-sent exactly that batch, which nexusd reported
/// as duplicates; every other batch was accepted. Returns the requests the proxy saw.
function checkDelivery(sdk, total) {
  const s = seen.filter((x) => x.sdk === sdk)
  const show = JSON.stringify(s.map((x) => [x.url, x.status, x.upstream, x.body]))
  assert.ok(s.length >= 2, show)
  assert.ok(s.every((x) => x.url === '/v1/batch' && x.upstream === 200), show)
  const bodies = s.map((x) => JSON.parse(x.body))
  assert.deepEqual([s[0].status, s[1].status], [503, 200], show)
  assert.ok(bodies[0].accepted > 0, show)
  // the retry: the same messages, all duplicates, nothing written
  assert.deepEqual([bodies[1].accepted, bodies[1].duplicates], [0, bodies[0].accepted], show)
  assert.ok(s.slice(1).every((x) => x.status === 200), show)
  assert.ok(bodies.every((b) => b.success === true && b.rejected.length === 0), show)
  assert.equal(bodies.reduce((n, b) => n + b.accepted, 0), total, show)
  return s
}

check('Segment SDK: JSON + Basic auth, first batch answered 503, retried, stored once', () => {
  assert.deepEqual(segmentErrors, [])
  const s = checkDelivery('segment', 6)
  assert.equal(s.length, 2) // one batch of 6 (flushAt 6) and its retry
  assert.equal(s[0].headers['content-type'], 'application/json')
  assert.match(s[0].headers.authorization, /^Basic /)
  assert.deepEqual([...JSON.parse(s[1].body).duplicate_message_ids].sort(), [...segmentIds].sort())
  assert.equal(segmentIds.length, 6)
})

check('RudderStack SDK: gzip + Basic auth, first batch answered 503, retried, stored once', () => {
  const s = checkDelivery('rudder', 7)
  assert.equal(s[0].headers['content-encoding'], 'gzip')
  assert.match(s[0].headers.authorization, /^Basic /)
  assert.ok(rudderBatches.length === 7 && rudderBatches.every((x) => x === 'ok'), JSON.stringify(rudderBatches))
})

// ---- the resolver runs in the background: wait until both persons are complete.
async function lookup(kind, type, value) {
  const r = await call('GET', `/v1/${kind}:lookup?identifier_type=${type}&identifier_value=${encodeURIComponent(value)}`,
    { key: adminKey })
  return r.status === 200 ? r.json : null
}
const deadline = Date.now() + 60000
let segPerson, rudPerson
for (;;) {
  segPerson = await lookup('persons', 'user_id', 'seg-u1')
  rudPerson = await lookup('persons', 'user_id', 'rud-u1')
  const ready = (p, n) => p && p.identifiers.length === n
  if ((ready(segPerson, 4) && ready(rudPerson, 4)) || Date.now() > deadline) break
  await new Promise((r) => setTimeout(r, 250))
}
const ids = (p) => p.identifiers.map((i) => `${i.type}:${i.value}@${i.source}`).sort()
const traits = (p) => Object.fromEntries(p.traits.map((x) => [x.name, x.value]))

check('Segment person: user id, both anonymous ids (one via alias) and email merged, traits', () => {
  assert.ok(segPerson, 'no person for user_id seg-u1')
  assert.deepEqual(ids(segPerson), [
    'anonymous_id:seg-a1@web', 'anonymous_id:seg-a2@web', 'email:seg.user@example.com@web', 'user_id:seg-u1@web'])
  assert.deepEqual(traits(segPerson), { name: 'Seg User', plan: 'pro' }) // the address object is not stored
  assert.equal(segPerson.email, 'seg.user@example.com')
  assert.equal(segPerson.name, 'Seg User')
})

for (const [type, value] of [['anonymous_id', 'seg-a1'], ['anonymous_id', 'seg-a2'], ['email', 'SEG.USER@example.com']]) {
  const p = await lookup('persons', type, value)
  check(`Segment person found by ${type} ${value}`, () => assert.equal(p && p.person_id, segPerson.person_id))
}

check('RudderStack person: the anonymous visitor and the signed-up user are one person, source "segment"', () => {
  assert.ok(rudPerson, 'no person for user_id rud-u1')
  assert.deepEqual(ids(rudPerson), [
    'anonymous_id:rud-a1@segment', 'email:rud@example.com@segment', 'phone:+14155550100@segment',
    'user_id:rud-u1@segment'])
  assert.deepEqual(traits(rudPerson), { title: 'CTO' })
  assert.notEqual(rudPerson.person_id, segPerson.person_id)
})

const group = await lookup('groups', 'group_id', 'acme-1')
check('group: group id + normalized domain (first seen through the Segment SDK), traits', () => {
  assert.ok(group, 'no group for group_id acme-1')
  assert.deepEqual(ids(group), ['domain:acme.example@web', 'group_id:acme-1@web'])
  assert.equal(group.company_name, 'Acme')
  assert.equal(group.industry, 'Tools')
  assert.equal(group.company_size, '50')
  assert.equal(group.domain, 'acme.example')
})

const members = group ? await call('GET', `/v1/groups/${group.group_id}/members`, { key: adminKey }) : null
check('group members: exactly the two persons, role member (the Rudder one joined anonymously)', () => {
  assert.equal(members.status, 200)
  const got = members.json.memberships.map((m) => `${m.person_id}:${m.role}`).sort()
  assert.deepEqual(got, [`${segPerson.person_id}:member`, `${rudPerson.person_id}:member`].sort())
})

const segMemberships = await call('GET', `/v1/persons/${segPerson.person_id}/memberships`, { key: adminKey })
check('Segment person memberships: acme-1 only', () => {
  assert.deepEqual(segMemberships.json.memberships.map((m) => [m.group_id, m.group_name, m.group_domain, m.role]),
    [[group.group_id, 'Acme', 'acme.example', 'member']])
})

async function timeline(personId) {
  const r = await call('GET', `/v1/persons/${personId}/timeline?page_size=50`, { key: adminKey })
  assert.equal(r.status, 200, JSON.stringify(r.json))
  return r.json.events.map((e) => [e.event_id, e.occurred_at, e.event_type, e.event_name, e.event_description,
    e.source, e.value === undefined ? null : e.value, e.value_unit])
}
const segTimeline = await timeline(segPerson.person_id)
check('Segment timeline: exactly the 6 messages, once each, newest first', () => {
  const [identify, viewed, alias, grp, order, page] = segmentIds
  assert.deepEqual(segTimeline, [
    [page, '2026-06-01T10:00:06Z', 'page', 'Pricing', 'Docs', 'web', null, ''],
    [order, '2026-06-01T10:00:05Z', 'track', 'Order Completed', '', 'web', 42.5, 'EUR'],
    [grp, '2026-06-01T10:00:04Z', 'group', 'group', '', 'web', null, ''],
    [alias, '2026-06-01T10:00:03Z', 'alias', 'alias', '', 'web', null, ''],
    [viewed, '2026-06-01T10:00:02Z', 'track', 'Viewed Pricing', '', 'web', null, ''],
    [identify, '2026-06-01T10:00:01Z', 'identify', 'identify', '', 'web', null, ''],
  ])
})
const rudTimeline = await timeline(rudPerson.person_id)
check('RudderStack timeline: exactly the 7 messages, once each, newest first', () => {
  const id = (n) => `rud-${n}`
  assert.deepEqual(rudTimeline, [
    [id(7), '2026-06-01T10:00:17Z', 'track', 'Upgraded', '', 'segment', 10, 'USD'],
    [id(6), '2026-06-01T10:00:16Z', 'screen', 'Settings', '', 'segment', null, ''],
    [id(5), '2026-06-01T10:00:15Z', 'page', 'Home', 'Landing', 'segment', null, ''],
    [id(4), '2026-06-01T10:00:14Z', 'alias', 'alias', '', 'segment', null, ''],
    [id(3), '2026-06-01T10:00:13Z', 'track', 'Signed Up', '', 'segment', 3, ''],
    [id(2), '2026-06-01T10:00:12Z', 'group', 'group', '', 'segment', null, ''],
    [id(1), '2026-06-01T10:00:11Z', 'identify', 'identify', '', 'segment', null, ''],
  ])
})

// ---- one more retry of a delivered batch, sent as the Segment SDK sent it: nothing new anywhere.
const resend = await call('POST', '/v1/track', { key: webKey, body: { messageId: segmentIds[4], userId: 'seg-u1',
  event: 'Order Completed', timestamp: t(5).toISOString(), properties: { revenue: 42.5, currency: 'EUR' } } })
check('a re-sent message is a duplicate and the timeline does not change', () => {
  assert.equal(resend.status, 200)
  assert.deepEqual([resend.json.accepted, resend.json.duplicates, resend.json.duplicate_message_ids],
    [0, 1, [segmentIds[4]]])
})
const segTimelineAgain = await timeline(segPerson.person_id)
check('timeline unchanged after the re-send', () => assert.deepEqual(segTimelineAgain, segTimeline))

// ---- a bad write key: the Segment SDK gets 401 and drops the batch (not retried); nothing is stored.
const bad = new Analytics({ writeKey: 'not-a-key', host: NEXUS, flushAt: 1, maxRetries: 3 })
const badErrors = []
const badStatuses = []
bad.on('http_response', (r) => badStatuses.push(r.status))
bad.on('error', (e) => badErrors.push(e))
bad.track({ userId: 'intruder', event: 'x' })
await bad.closeAndFlush({ timeout: 10000 })
const intruder = await lookup('persons', 'user_id', 'intruder')
check('unknown write key: 401 once, not retried, nothing stored', () => {
  assert.deepEqual(badStatuses, [401])
  assert.equal(badErrors.length, 1)
  assert.equal(intruder, null)
})

if (failures) {
  console.log(`${failures} check(s) failed`)
  process.exit(1)
}
console.log('all SDK checks passed')
