"""Drives the web console in headless Chromium (Selenium + chromedriver) against a running agentd
that a test started with a scripted model: the model books the hotel named after "book " in the
query and then answers in Markdown. Sets up tasks and memories over HTTP, decides and deletes
through the page, and checks the outcome over HTTP again. Fails on any browser console error.
Saves a screenshot of every page at laptop and phone width, in English and in Chinese.

Exit status 0 when every check held; on failure the last screenshot, the page's HTML and the
browser's log are saved beside the screenshots."""

import argparse
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from parent_watch import exit_with

parser = argparse.ArgumentParser()
parser.add_argument("--base-url", required=True)
parser.add_argument("--key", required=True, help="a tenant key (the console signs in with it)")
parser.add_argument("--user", default="u1")
parser.add_argument("--screenshots", required=True, help="a folder for the page images")
parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
parser.add_argument("--chromedriver", default=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
parser.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone (the test run)")
args = parser.parse_args()
exit_with(args.parent_pid)

USER = args.user
LAPTOP = (1280, 800)
PHONE = (390, 844)
WAIT = 30
os.makedirs(args.screenshots, exist_ok=True)


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


# MARK: the API, for setting up and for checking what the page did


def api(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(args.base_url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {args.key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise CheckFailed(f"{method} {path}: {error.code} {error.read()[:300]!r}") from error


def invoke(session, task, query):
    api("POST", "/agent/invoke", {"user_id": USER, "session_id": session, "task_id": task, "query": query})


def status(session, task):
    return api("GET", f"/agent/status/{USER}/{session}/{task}")


def settled(session, task, within=WAIT):
    deadline = time.time() + within
    while time.time() < deadline:
        answer = status(session, task)
        if answer["status"] in ("completed", "error", "cancelled"):
            return answer
        time.sleep(0.2)
    raise CheckFailed(f"{session}/{task} did not finish: {answer['status']}")


def interrupted(session, task):
    deadline = time.time() + WAIT
    while status(session, task)["status"] != "interrupted":
        check(time.time() < deadline, f"{session}/{task} never waited for approval")
        time.sleep(0.1)


def messages(answer):
    return (answer.get("last_response") or {}).get("result", {}).get("messages", [])


# MARK: the browser

options = webdriver.ChromeOptions()
options.binary_location = args.chromium
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=en-US", "--window-size=1280,800"):
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
console_log = []


def browser_errors():
    """The console's messages since the last call; any error fails the run."""
    entries = driver.get_log("browser")
    console_log.extend(entries)
    errors = [entry for entry in entries if entry["level"] == "SEVERE"]
    check(not errors, f"browser console errors: {errors}")


def wait_for(condition, what, within=WAIT):
    try:
        return WebDriverWait(driver, within, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda _: condition())
    except TimeoutException as error:
        raise CheckFailed(f"timed out waiting for {what}") from error


def find(selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def one(selector, within=WAIT):
    return wait_for(lambda: (find(selector) or [None])[0], selector, within)


def text_of(selector):
    elements = find(selector)
    return elements[0].text if elements else ""


def click(selector):
    """Clicks the element, finding it again if the page redrew it (the inbox redraws every 2.5 s)."""
    def attempt():
        elements = find(selector)
        if not elements or not elements[0].is_enabled():
            return False
        elements[0].click()
        return True
    wait_for(attempt, f"a clickable {selector}")


def keys(*sequence):
    """Types at whatever has the focus, as a person at the keyboard would."""
    ActionChains(driver).send_keys(*sequence).perform()


def nav(page):
    click(f'#nav a[data-page="{page}"]')
    wait_for(lambda: driver.execute_script("return location.hash").startswith(f"#/{page}"), f"the {page} page")


def set_size(width, height):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def shoot(name, lang):
    """Both widths; at phone width nothing may need sideways scrolling. A value the page failed
    to draw shows up as the words null or undefined."""
    lines = driver.execute_script("return document.getElementById('main').innerText").split("\n")
    check(not {"null", "undefined", "NaN", "[object Object]"} & {line.strip() for line in lines}, f"{name} ({lang}) shows a raw value: {lines}")
    for label, (width, height) in (("laptop", LAPTOP), ("phone", PHONE)):
        set_size(width, height)
        time.sleep(0.3)
        overflow = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        check(overflow[0] <= overflow[1] + 1, f"{name} ({lang}, {label}) scrolls sideways: {overflow}")
        driver.save_screenshot(os.path.join(args.screenshots, f"{name}-{lang}-{label}.png"))
    set_size(*LAPTOP)
    browser_errors()


def inbox_rows():
    return find("#inbox-list li[data-task]")


def inbox_row(session, task):
    for row in inbox_rows():
        if f"· {session} · {task}" in row.text:
            return row
    return None


# MARK: the scenario


def sign_in():
    driver.get(args.base_url + "/console/")
    field = one("#signin-key")
    shoot("signin", "en")
    field.send_keys(args.key)
    click("#signin-submit")
    one("#inbox-list")
    check(driver.execute_script("return sessionStorage.getItem('agentd.key')") == args.key, "the key is kept in session storage")
    check(args.key not in driver.current_url, "the key never goes into the address")
    check("tenant" in text_of("#who").lower(), f"who: {text_of('#who')!r}")
    browser_errors()


def edit_in_inbox():
    """s1/t1 waits for book_hotel(如家酒店); `e` opens the editor; Ctrl+Enter sends another hotel."""
    invoke("s1", "t1", "book 如家酒店")
    interrupted("s1", "t1")
    wait_for(lambda: inbox_row("s1", "t1"), "s1/t1 in the inbox")
    wait_for(lambda: "1" in text_of("#inbox-count"), "the inbox count")
    wait_for(lambda: "如家酒店" in text_of("#inbox-args"), "the arguments")
    wait_for(lambda: "book 如家酒店" in text_of("#inbox-conversation"), "the conversation")
    check("book_hotel" in text_of("#inbox-detail h2"), "the tool is named")
    # The description is Markdown, where an underscore inside a word is only an underscore.
    check("工具 book_hotel 需要人工审批" in text_of("#inbox-detail .md"), f"the description: {text_of('#inbox-detail .md')!r}")
    shoot("inbox", "en")
    inbox_row("s1", "t1").click()
    keys("e")
    editor = one("#inbox-editor-text")
    check(driver.switch_to.active_element == editor, "the editor has the focus")
    check("如家酒店" in editor.get_attribute("value"), "the editor starts from the arguments")
    # Bad JSON is refused in the page, with a message, and nothing is sent.
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys('{"hotel_name": ')
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    wait_for(lambda: text_of("#inbox-editor-error"), "the JSON error")
    check(status("s1", "t1")["status"] == "interrupted", "bad JSON sent nothing")
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys('{"hotel_name": "全季酒店"}')
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    wait_for(lambda: find("#inbox-empty"), "the inbox to empty")
    answer = settled("s1", "t1")
    check(answer["status"] == "completed", f"s1/t1: {answer['status']}")
    tool = [m for m in messages(answer) if m.get("type") == "tool"]
    check(tool and "全季酒店" in tool[-1]["content"], f"the edited arguments ran: {tool}")
    browser_errors()


def sessions_page():
    nav("sessions")
    field = one("#sessions-user")
    field.clear()
    field.send_keys(USER)
    click("#sessions-user-open")
    one('#session-list li[data-session="s1"]')
    one('#task-list li[data-task="t1"]')
    one('#task-status[data-status="completed"]')
    wait_for(lambda: "全季酒店" in text_of("#task-events"), "the tool's result in the task's messages")
    # The answer is Markdown: built as elements, not shown as asterisks.
    wait_for(lambda: find("#task-events strong") and find("#task-events code"), "the answer's Markdown")
    check(text_of("#task-events strong") == "已完成", f"bold: {text_of('#task-events strong')!r}")
    check(find('#task-events [data-type="decision"]'), "the decision is among the events")
    shoot("sessions", "en")

    # A task that starts while the page is open shows up and settles without a reload.
    invoke("s1", "t2", "book 汉庭酒店")
    click('#nav a[data-page="inbox"]')
    wait_for(lambda: inbox_row("s1", "t2"), "s1/t2 in the inbox")
    driver.execute_script("location.hash = '#/sessions?user=' + arguments[0] + '&session=s1&task=t2'", USER)
    one('#task-list li[data-task="t2"]')
    wait_for(lambda: find('#task-status[data-status="interrupted"]'), "t2 waits for approval")
    api("POST", "/agent/resume", {"user_id": USER, "session_id": "s1", "task_id": "t2", "response_type": "accept"})
    wait_for(lambda: find('#task-status[data-status="completed"]'), "t2 completes, live")
    wait_for(lambda: "汉庭酒店" in text_of("#task-events"), "t2's tool result, live")
    browser_errors()


def batch_reject():
    """Two approvals in two sessions: x, j, x selects both, then one batch rejects them."""
    hostile = 'book <img src=x onerror="document.title=1">'
    invoke("s2", "t1", hostile)
    invoke("s3", "t1", "book 7天酒店")
    interrupted("s2", "t1")
    interrupted("s3", "t1")
    nav("inbox")
    wait_for(lambda: len(inbox_rows()) == 2, "two approvals")
    check(not find("#inbox-list img") and not find("#inbox-detail img"), "a query is shown as text, never as HTML")
    check(any(hostile in row.text for row in inbox_rows()), "the query's text is shown as written")
    inbox_rows()[0].click()
    keys("x")
    keys("j")
    wait_for(lambda: "current" in inbox_rows()[1].get_attribute("class"), "j moves down")
    keys("x")
    wait_for(lambda: all(row.find_element(By.CSS_SELECTOR, ".pick").is_selected() for row in inbox_rows()), "both selected")
    keys("k")
    wait_for(lambda: "current" in inbox_rows()[0].get_attribute("class"), "k moves up")
    check("2" in text_of("#inbox-reject-selected"), f"the batch button counts: {text_of('#inbox-reject-selected')!r}")
    click("#inbox-reject-selected")
    wait_for(lambda: find("#inbox-empty"), "the inbox to empty after the batch")
    for session in ("s2", "s3"):
        answer = settled(session, "t1")
        check(answer["status"] == "completed", f"{session}/t1: {answer['status']}")
        tool = [m for m in messages(answer) if m.get("type") == "tool"]
        check(tool and "该工具被拒绝使用" in tool[-1]["content"], f"{session}/t1 was rejected: {tool}")
    browser_errors()


def held_after_vanish():
    """The approval being edited is decided elsewhere: the pane says so, and a key pressed then
    decides nothing else; moving on shows the next one, which `r` rejects."""
    invoke("s5", "t1", "book 桔子酒店")
    interrupted("s5", "t1")
    invoke("s6", "t1", "book 亚朵酒店")
    interrupted("s6", "t1")
    wait_for(lambda: len(inbox_rows()) == 2, "two approvals")
    wait_for(lambda: inbox_row("s5", "t1"), "s5/t1")
    inbox_row("s5", "t1").click()
    wait_for(lambda: "桔子酒店" in text_of("#inbox-args"), "s5's arguments")
    time.sleep(0.7)
    keys("e")
    one("#inbox-editor-text")
    api("POST", "/agent/resume", {"user_id": USER, "session_id": "s5", "task_id": "t1", "response_type": "accept"})
    one("#inbox-gone")
    keys("a")
    keys("r")
    time.sleep(1)
    check(status("s6", "t1")["status"] == "interrupted", "a key pressed on the notice decided nothing")
    check(find("#inbox-gone"), "the notice stays until the person moves")
    keys("j")
    keys("k")
    wait_for(lambda: "亚朵酒店" in text_of("#inbox-args"), "s6 shown after moving")
    time.sleep(0.7)
    keys("r")
    wait_for(lambda: find("#inbox-empty"), "the inbox to empty after r")
    answer = settled("s6", "t1")
    tool = [m for m in messages(answer) if m.get("type") == "tool"]
    check(tool and "该工具被拒绝使用" in tool[-1]["content"], f"s6/t1 was rejected: {tool}")
    browser_errors()


def memories_page():
    kept = api("POST", "/agent/write/longterm", {"user_id": USER, "memory_info": "I prefer aisle seats on long flights"})
    gone = api("POST", "/agent/write/longterm", {"user_id": USER, "memory_info": "我喜欢靠窗的座位"})
    check(kept.get("memory_id") and gone.get("memory_id"), f"memories written: {kept} {gone}")
    nav("memories")
    field = one("#memories-user")
    field.clear()
    field.send_keys(USER, Keys.ENTER)
    wait_for(lambda: len(find("#memory-list li[data-memory]")) == 2, "two memories")
    search = one("#memory-search")
    search.send_keys("aisle")
    click("#memory-search-go")
    wait_for(lambda: [li.get_attribute("data-memory") for li in find("#memory-list li[data-memory]")] == [kept["memory_id"]],
             "the search finds the aisle memory alone")
    search.clear()
    click("#memory-search-go")
    wait_for(lambda: len(find("#memory-list li[data-memory]")) == 2, "both again")
    click(f'#memory-list li[data-memory="{gone["memory_id"]}"]')
    wait_for(lambda: text_of("#memory-text") == "我喜欢靠窗的座位", "the memory's text")
    shoot("memories", "en")
    click("#memory-delete")
    one("#memory-confirm:not([hidden])")
    click("#memory-delete-yes")
    wait_for(lambda: [li.get_attribute("data-memory") for li in find("#memory-list li[data-memory]")] == [kept["memory_id"]],
             "the deleted memory to leave the list")
    left = [m["memory_id"] for m in api("GET", f"/agent/memory/{USER}")["memories"]]
    check(left == [kept["memory_id"]], f"the delete reached the service: {left}")
    browser_errors()


def usage_page():
    nav("usage")
    one("#usage-table")
    one("#approvals-table")
    one("#latency-table")
    check(find("#usage-bars > div"), "the tokens chart has bars")
    approvals = text_of("#approvals-table")
    check("book_hotel" in approvals, f"approvals: {approvals!r}")
    shoot("usage", "en")
    browser_errors()


def in_chinese():
    """The same pages in Chinese; the last approval is accepted with `a`."""
    click("#lang")
    wait_for(lambda: "待审批" in text_of("#nav"), "the Chinese page names")
    check(driver.execute_script("return document.documentElement.lang") == "zh-CN", "the page says it is Chinese")
    invoke("s4", "t1", "book 锦江之星")
    interrupted("s4", "t1")
    nav("inbox")
    wait_for(lambda: inbox_row("s4", "t1"), "s4/t1 in the inbox")
    wait_for(lambda: "锦江之星" in text_of("#inbox-args"), "the arguments")
    check("批准" in text_of("#decide-accept"), f"accept in Chinese: {text_of('#decide-accept')!r}")
    shoot("inbox", "zh")
    inbox_row("s4", "t1").click()
    keys("a")
    wait_for(lambda: find("#inbox-empty"), "the inbox to empty after a")
    check(settled("s4", "t1")["status"] == "completed", "s4/t1 accepted by a")
    driver.execute_script("location.hash = '#/sessions?user=' + arguments[0] + '&session=s4&task=t1'", USER)
    one('#task-status[data-status="completed"]')
    shoot("sessions", "zh")
    nav("memories")
    field = one("#memories-user")
    field.clear()
    field.send_keys(USER, Keys.ENTER)
    one("#memory-list li[data-memory]")
    shoot("memories", "zh")
    nav("usage")
    one("#approvals-table")
    shoot("usage", "zh")
    # The choice is remembered across a reload, and so is the sign-in (this tab's session).
    driver.refresh()
    wait_for(lambda: "待审批" in text_of("#nav") and find("#usage-table"), "Chinese after a reload, still signed in")
    browser_errors()


def sign_out():
    click("#signout")
    one("#signin-key")
    check(driver.execute_script("return sessionStorage.getItem('agentd.key')") is None, "signing out forgets the key")
    browser_errors()


steps = [sign_in, edit_in_inbox, sessions_page, batch_reject, held_after_vanish, memories_page, usage_page, in_chinese, sign_out]
failed = False
try:
    for step in steps:
        print(f"step {step.__name__}", flush=True)
        step()
    print("console checks passed", flush=True)
except Exception:  # noqa: BLE001 - every failure is reported with what the page showed
    failed = True
    traceback.print_exc()
    try:
        driver.save_screenshot(os.path.join(args.screenshots, "failure.png"))
        with open(os.path.join(args.screenshots, "failure.html"), "w", encoding="utf-8") as page:
            page.write(driver.page_source)
        console_log.extend(driver.get_log("browser"))
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    print("browser log:", json.dumps(console_log, ensure_ascii=False, indent=1), flush=True)
finally:
    driver.quit()
sys.exit(1 if failed else 0)
