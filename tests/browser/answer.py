# Drives headless Chromium (Debian's `chromium`) over the DevTools protocol,
# as an agency would use the answer portal: open the link from its email,
# read the page, fill in a field, choose an outcome, press 提交, read the
# page that follows. Prints {"first": TEXT, "after": TEXT} as JSON.
#
#   python3 answer.py URL FIELD VALUE OUTCOME
#
# Needs python3-websocket; the browser is $DUBAN_CHROMIUM or /usr/bin/chromium.
import json, os, shutil, subprocess, sys, tempfile, time, urllib.request

import websocket

url, field, value, outcome = sys.argv[1:5]
chromium = os.environ.get("DUBAN_CHROMIUM", "/usr/bin/chromium")
profile = tempfile.mkdtemp(prefix="duban-chromium-")
browser = subprocess.Popen(
    [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
     "--remote-debugging-port=0", "--remote-allow-origins=*",
     "--user-data-dir=" + profile, "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + 60
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        if time.time() > deadline or browser.poll() is not None:
            sys.exit("chromium did not start")
        time.sleep(0.1)
    port = int(open(port_file).read().split()[0])
    targets = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port))
    page = next(t for t in targets if t["type"] == "page")
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True, timeout=60)
    seq = [0]

    def call(method, **params):
        seq[0] += 1
        ws.send(json.dumps({"id": seq[0], "method": method, "params": params}))
        while True:
            m = json.loads(ws.recv())
            if m.get("id") == seq[0]:
                if "error" in m:
                    sys.exit("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def wait_load():
        while True:
            m = json.loads(ws.recv())
            if m.get("method") == "Page.loadEventFired":
                return

    def text():
        r = call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
        return r["result"]["value"]

    call("Page.enable")
    call("Page.navigate", url=url)
    wait_load()
    first = text()
    fill = """(() => {
      const f = document.querySelector('[name=%s]');
      if (!f) return 'no field';
      f.value = %s;
      const o = document.querySelector('input[name=_outcome][value=%s]');
      if (!o) return 'no outcome';
      o.click();
      document.querySelector('button[type=submit]').click();
      return 'submitted';
    })()""" % (json.dumps(field), json.dumps(value), json.dumps(outcome))
    done = call("Runtime.evaluate", expression=fill, returnByValue=True)["result"]["value"]
    if done != "submitted":
        sys.exit("the form: " + done + "\n" + first)
    wait_load()
    print(json.dumps({"first": first, "after": text()}, ensure_ascii=False))
finally:
    browser.terminate()
    try:
        browser.wait(10)
    except subprocess.TimeoutExpired:
        browser.kill()
    shutil.rmtree(profile, ignore_errors=True)
