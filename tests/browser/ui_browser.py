#!/usr/bin/python3
"""Browser test of the support page (/ui) in a real headless Chromium, driven over the DevTools protocol.

Standard library only: Chromium is started with --remote-debugging-pipe, which speaks the DevTools protocol as
NUL-terminated JSON messages on file descriptors 3 (commands in) and 4 (replies and events out), so no WebSocket
client is needed and nothing is downloaded.

  ui_browser.py --base http://127.0.0.1:8080 --screenshots DIR [--chromium /usr/bin/chromium]

Seeds its own data through the HTTP API (unique ids per run, so it can run against any nexusd that serves
without a key), then: searches for a person by a fragment, opens the page, checks identities, traits with
sources, companies and the first timeline page, loads the next page, asks "why are these linked", checks that
markup in data is shown as text, opens the company page and an event page. Screenshots of each step go to DIR.
Exit status 0 when every check passed; the first failing check is printed.
"""

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


class Fail(Exception):
    pass


def log(msg):
    print("ui_browser: " + msg, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Data


def post_json(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def get_json(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def seed(base, run):
    """Jane (Acme, finance) sends 26 emails; her email and user id are linked by the first one."""
    jane = "jane.doe.%s@acme-%s.io" % (run, run)
    domain = "acme-%s.io" % run
    events = []
    for i in range(26):
        persons = [{"role": "sender", "identifiers": [{"type": "email", "value": jane}]},
                   {"role": "recipient", "identifiers": [{"type": "email", "value": "peer%02d.%s@example.com" % (i, run)}]}]
        ev = {"event_id": "ui-%s-mail-%02d" % (run, i), "occurred_at": "2026-10-%02dT09:00:00Z" % (i + 1),
              "event_name": "email %02d" % i, "event_type": "email", "source": "gmail", "persons": persons}
        if i == 0:
            persons[0]["identifiers"].append({"type": "user_id", "value": "u-%s" % run})
            persons[0]["traits"] = {"name": "Jane Doe %s" % run, "title": "CFO"}
            ev["groups"] = [{"role": "account", "identifiers": [{"type": "domain", "value": domain}],
                             "traits": {"company_name": "Acme %s" % run}}]
            ev["memberships"] = [{"person": {"type": "email", "value": jane},
                                  "group": {"type": "domain", "value": domain}, "role": "finance"}]
        events.append(ev)
    # Markup in data must show as text.
    events.append({"event_id": "ui-%s-xss" % run, "occurred_at": "2026-10-01T10:00:00Z", "event_name": "signup",
                   "event_type": "product", "source": "app",
                   "persons": [{"role": "user", "identifiers": [{"type": "email", "value": "eve.%s@evil.test" % run}],
                                "traits": {"name": "<img src=x onerror=alert(1)><b>Eve %s</b>" % run}}]})
    out = post_json(base, "/v1/events:ingest", {"events": events})
    if int(out.get("accepted", 0)) + int(out.get("duplicates", 0)) != len(events):
        raise Fail("ingest: %r" % out)
    # Wait for the resolver (ingest wakes it).
    q = "/v1/persons:lookup?" + urllib.parse.urlencode({"identifier_type": "email", "identifier_value": jane})
    deadline = time.time() + 60
    while time.time() < deadline:
        status, body = get_json(base, q)
        if status == 200 and body and len(body.get("identifiers", [])) == 2:
            t_status, t = get_json(base, "/v1/persons/%s/timeline?page_size=100" % body["person_id"])
            if t_status == 200 and len(t.get("events", [])) == 26:
                status2, _ = get_json(base, "/v1/persons:lookup?" + urllib.parse.urlencode(
                    {"identifier_type": "email", "identifier_value": "eve.%s@evil.test" % run}))
                if status2 == 200:
                    return jane, body["person_id"]
        time.sleep(0.2)
    raise Fail("the seeded data was not resolved within 60 s")


# ---------------------------------------------------------------------------------------------------------------
# DevTools protocol over a pipe


class Browser:
    def __init__(self, chromium, profile_dir):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium reads fd 3 and writes fd 4: move both ends out of the way first, then into place.
        a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 20)
        b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 20)

        def child_fds():
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--mute-audio",
                "--remote-debugging-pipe", "--window-size=1366,900", "--user-data-dir=" + profile_dir,
                "about:blank"]
        self._proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(profile_dir, "stderr.log"), "w"))
        for fd in (to_browser_r, from_browser_w, a, b):
            os.close(fd)
        self._buf = b""
        self._next_id = 0
        self.events = []
        self.session = None

    def close(self):
        try:
            self.call("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            if time.time() > deadline:
                raise Fail("DevTools: no answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise Fail("Chromium closed the DevTools pipe (exit %r)" % self._proc.poll())
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=True, timeout=30):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._next_id:
                if "error" in m:
                    raise Fail("DevTools %s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def open_page(self):
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(domain)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1366, "height": 900, "deviceScaleFactor": 1, "mobile": False})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise Fail("page script failed: %s (%s)" % (r["exceptionDetails"].get("text"), expr[:80]))
        return r["result"].get("value")

    def wait_for(self, expr, what, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(0.1)
        raise Fail("timed out waiting for " + what)

    def key(self, key, code, text=None, vk=0):
        down = {"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk}
        if text is not None:
            down["text"] = text
        self.call("Input.dispatchKeyEvent", down)
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk})

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        log("screenshot " + path)

    def errors(self):
        out = []
        for e in self.events:
            if e["method"] == "Runtime.exceptionThrown":
                out.append(e["params"]["exceptionDetails"].get("text", "exception"))
            elif e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
                out.append(e["params"]["entry"].get("text", "error"))
            elif e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                out.append("console.error")
            elif e["method"] == "Page.javascriptDialogOpening":
                out.append("a dialog opened: " + e["params"].get("message", ""))
        return out


def count(selector):
    return "document.querySelectorAll(%s).length" % json.dumps(selector)


def text_of(selector):
    return "(document.querySelector(%s) || {textContent: ''}).textContent" % json.dumps(selector)


def click(selector):
    return "(() => { const e = document.querySelector(%s); if (!e) return false; e.click(); return true; })()" % (
        json.dumps(selector))


def check(cond, what):
    if not cond:
        raise Fail(what)
    log("ok: " + what)


# ---------------------------------------------------------------------------------------------------------------


def run(args):
    base = args.base.rstrip("/")
    run_id = "%x" % int(time.time() * 1000)
    jane, jane_id = seed(base, run_id)
    log("seeded run %s (person %s)" % (run_id, jane_id))
    os.makedirs(args.screenshots, exist_ok=True)
    shot = lambda name: b.screenshot(os.path.join(args.screenshots, name))
    profile = tempfile.mkdtemp(prefix="nexus-chromium-")
    b = Browser(args.chromium, profile)
    try:
        b.open_page()
        b.call("Page.navigate", {"url": base + "/ui"})
        b.wait_for("document.body && document.body.getAttribute('data-ready') === '#/'", "the page to load")

        # 1. Search by a fragment, with the keyboard: "/" focuses the box, Enter submits.
        b.key("/", "Slash", "/", 191)
        check(b.eval("document.activeElement && document.activeElement.id === 'search-input'"),
              "'/' focuses the search box")
        fragment = "doe." + run_id
        b.call("Input.insertText", {"text": fragment})
        b.key("Enter", "Enter", "\r", 13)
        b.wait_for(count("[data-testid=person-hits] a[data-testid=hit]") + " > 0", "search results")
        check(("Jane Doe " + run_id) in b.eval(text_of("[data-testid=person-hits]")),
              "search for the fragment %r lists Jane by name" % fragment)
        shot("01-search.png")

        # 2. Open her page.
        b.eval(click("[data-testid=person-hits] a[data-testid=hit]"))
        b.wait_for(count("[data-testid=timeline-rows] tr") + " >= 20", "the person page with its first timeline page")
        check(b.eval(text_of("[data-testid=entity-title]")) == "Jane Doe " + run_id, "the page shows her name")
        ids = b.eval(text_of("[data-testid=identities]"))
        check(jane in ids and ("u-" + run_id) in ids and "gmail" in ids, "identities with their source")
        traits = b.eval(text_of("[data-testid=traits]"))
        check("title" in traits and "CFO" in traits and "gmail" in traits, "traits with source")
        companies = b.eval(text_of("[data-testid=companies]"))
        check(("Acme " + run_id) in companies and "finance" in companies, "companies with the role")
        check(b.eval(count("[data-testid=timeline-rows] tr")) == 20, "the first timeline page has 20 events")
        first_page = b.eval(text_of("[data-testid=timeline-rows]"))
        check("email 25" in first_page and "email 00" not in first_page, "newest events first")
        b.wait_for(count("[data-testid=history]") + " && !" + text_of("[data-testid=history]") +
                   ".includes('Loading')", "merge history")
        check(not b.eval("/\\b(null|undefined|NaN)\\b/.test(document.querySelector('main').innerText)"),
              "no 'null', 'undefined' or 'NaN' printed on the page")
        shot("02-person.png")

        # 3. The next page.
        b.eval(click("[data-testid=timeline-more]"))
        b.wait_for(count("[data-testid=timeline-rows] tr") + " === 26", "the second timeline page")
        check("email 00" in b.eval(text_of("[data-testid=timeline-rows]")), "load more appends the older events")
        check(b.eval("document.querySelector('[data-testid=timeline-more]').hidden"), "no more pages after the last")
        shot("03-timeline-page-2.png")

        # 4. Why are her email and user id one person?
        b.eval("(() => { const a = document.querySelector('[data-testid=explain-a]'),"
               " b = document.querySelector('[data-testid=explain-b]');"
               " const idx = (s, t) => [...s.options].findIndex(o => o.textContent.startsWith(t));"
               " a.value = String(idx(a, 'email')); b.value = String(idx(b, 'user_id')); return true; })()")
        b.eval(click("[data-testid=explain-button]"))
        b.wait_for(text_of("[data-testid=explain-result]") + ".includes('inked')", "the explanation")
        result = b.eval(text_of("[data-testid=explain-result]"))
        check(result.startswith("Linked") and ("ui-%s-mail-00" % run_id) in result,
              "explain shows the link and the event that made it")
        shot("04-explain.png")

        # 5. The company page (members, activity including members) and an event page.
        b.eval(click("[data-testid=companies] a"))
        b.wait_for(count("[data-testid=members] tr") + " > 1", "the company page")
        check("finance" in b.eval(text_of("[data-testid=members]")), "members with roles")
        b.wait_for(count("[data-testid=timeline-rows] tr") + " >= 20", "the company activity")
        check(not b.eval("/\\b(null|undefined|NaN)\\b/.test(document.querySelector('main').innerText)"),
              "no 'null', 'undefined' or 'NaN' printed on the company page")
        shot("05-company.png")
        b.eval(click("[data-testid=timeline-rows] a"))
        b.wait_for(count("[data-testid=participants] tr") + " >= 2", "an event page with participants")
        check(jane in b.eval(text_of("[data-testid=participants]")), "the event lists Jane and what identified her")
        shot("06-event.png")

        # 6. Markup in data is text.
        b.call("Page.navigate", {"url": base + "/ui#/search?q=" + urllib.parse.quote("eve." + run_id)})
        b.wait_for(count("[data-testid=person-hits] a[data-testid=hit]") + " > 0", "the search for Eve")
        check(("<b>Eve " + run_id + "</b>") in b.eval(text_of("[data-testid=person-hits]")),
              "a name with markup is shown literally")
        check(b.eval("document.querySelectorAll('main img, main b').length") == 0, "no element was made from data")
        shot("07-markup-as-text.png")

        errs = b.errors()
        check(not errs, "no script errors, CSP violations or dialogs" + ("" if not errs else ": %r" % errs))
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="nexusd HTTP base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--screenshots", required=True, help="directory for the PNG screenshots")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args()
    try:
        run(args)
    except Fail as e:
        print("ui_browser: FAILED: %s" % e, flush=True)
        return 1
    log("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
