// The agentd console: plain JavaScript modules, no build step. Every call goes through the REST
// API with the key kept in sessionStorage; everything the API returns reaches the page as text
// nodes (or through markdown.js, which builds elements, never HTML).
import { STRINGS } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";

const KEY_STORAGE = "agentd.key";
const LANG_STORAGE = "agentd.lang";
const INBOX_POLL_MS = 2500;
// POST /agent/resume/batch takes at most this many decisions.
const BATCH_LIMIT = 100;
const TASKS_POLL_MS = 5000;

const app = {
  key: sessionStorage.getItem(KEY_STORAGE),
  who: null,
  // The stored choice, else the browser's language.
  lang: localStorage.getItem(LANG_STORAGE) in STRINGS ? localStorage.getItem(LANG_STORAGE)
    : (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en",
  page: null,
};

// MARK: words, numbers, times

function t(key, values = {}) {
  const text = STRINGS[app.lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (values[name] ?? ""));
}

function number(value, digits = 0) {
  if (value === null || value === undefined) return "–";
  return new Intl.NumberFormat(app.lang === "zh" ? "zh-CN" : "en", { maximumFractionDigits: digits }).format(value);
}

function when(seconds) {
  if (!seconds) return "–";
  return new Intl.DateTimeFormat(app.lang === "zh" ? "zh-CN" : "en", { dateStyle: "medium", timeStyle: "medium" }).format(new Date(seconds * 1000));
}

/** "3 minutes ago", "in 2 hours": unix seconds against now. */
function relative(seconds) {
  const format = new Intl.RelativeTimeFormat(app.lang === "zh" ? "zh-CN" : "en", { numeric: "auto" });
  const delta = seconds - Date.now() / 1000;
  const steps = [[60, "second"], [3600, "minute"], [86400, "hour"], [Infinity, "day"]];
  const sizes = { second: 1, minute: 60, hour: 3600, day: 86400 };
  for (const [limit, unit] of steps) {
    if (Math.abs(delta) < limit) return format.format(Math.round(delta / sizes[unit]), unit);
  }
  return "";
}

/** "3 min" for a duration in seconds. */
function duration(seconds) {
  const format = (value, unit) => new Intl.NumberFormat(app.lang === "zh" ? "zh-CN" : "en", { style: "unit", unit, unitDisplay: "short", maximumFractionDigits: 0 }).format(value);
  if (seconds < 60) return format(Math.max(0, seconds), "second");
  if (seconds < 3600) return format(seconds / 60, "minute");
  if (seconds < 86400) return format(seconds / 3600, "hour");
  return format(seconds / 86400, "day");
}

// MARK: DOM

/** An element: `h("li", {class: "x", onclick: f}, "text", child)`. Strings become text nodes. */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

function statusBadge(status) {
  return h("span", { class: `status ${status}`, "data-status": status }, t(`status.${status}`));
}

let toastTimer;
function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove("show"), 4000);
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

// MARK: the API

class APIError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** One call to the API as the signed-in key; `{"detail"}` errors become APIError. */
async function api(method, path, body, { signal, key = app.key } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new APIError(0, t("error.network", { detail: error.message }));
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!response.ok) {
    const detail = (data && typeof data.detail === "string" && data.detail) || `${response.status} ${response.statusText}`;
    // The key was revoked, or (open mode) a first key was made: either way, sign in again.
    if (response.status === 401 && key === app.key && app.who) signOut(t("signin.expired", { detail }));
    throw new APIError(response.status, detail);
  }
  return data;
}

const enc = encodeURIComponent;
const taskPath = (item) => `${enc(item.user_id)}/${enc(item.session_id)}/${enc(item.task_id)}`;

/** The task's events as they come (Server-Sent Events read through fetch, so that the key goes in a
 * header). Resolves true when the task ended, false when following stopped for another reason. */
async function followEvents(item, onEvent, signal) {
  const headers = { Accept: "text/event-stream" };
  if (app.key) headers.Authorization = `Bearer ${app.key}`;
  let after = 0;
  let failures = 0;
  // A stream that the service ends (an approval, a restart) is opened again after what it sent;
  // 204 means there is nothing more to come. A failure is tried again, less often each time.
  while (!signal.aborted) {
    let response;
    try {
      response = await fetch(`/agent/events/${taskPath(item)}?follow=1&after=${after}`, { headers, signal, cache: "no-store" });
    } catch (error) {
      if (error.name === "AbortError") return false;
      response = null;
    }
    if (response?.status === 204) return true;
    if (response?.status === 401 && app.who) { signOut(t("signin.expired", { detail: "401" })); return false; }
    if (response && response.status >= 400 && response.status < 500) return false;
    if (!response || !response.ok || !response.body) {
      failures += 1;
      await sleep(Math.min(30000, 1000 * 2 ** Math.min(failures, 5)), signal);
      continue;
    }
    failures = 0;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let ended = false;
    try {
      while (!ended) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
          let data = "";
          for (const line of block.split(/\r?\n/)) {
            if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
          }
          if (!data) continue;
          const event = JSON.parse(data);
          if (typeof event.seq === "number") after = event.seq;
          onEvent(event);
          if (["task.completed", "task.error", "task.cancelled"].includes(event.type)) ended = true;
        }
      }
    } catch (error) {
      if (error.name === "AbortError") return false;
    } finally {
      reader.cancel().catch(() => {});
    }
    if (ended) return true;
    await sleep(500, signal);
  }
  return false;
}

// MARK: pages and their lifetime

/** What a page started (requests, timers, key handler): stopped when another page opens. */
class PageScope {
  constructor() {
    this.controller = new AbortController();
    this.timers = [];
    this.keyHandler = null;
  }
  get signal() { return this.controller.signal; }
  /** Runs `body` now and every `ms` while the page is open and the tab is visible. */
  every(ms, body) {
    const tick = async () => {
      if (this.signal.aborted) return;
      if (!document.hidden) await this.guard(body());
      if (!this.signal.aborted) this.timers.push(setTimeout(tick, ms));
    };
    tick();
  }
  onKey(handler) {
    this.keyHandler = handler;
    document.addEventListener("keydown", handler);
  }
  /** Awaits `promise`; an abort (the page closed) is silent, any other error is shown. */
  async guard(promise) {
    try {
      return await promise;
    } catch (error) {
      if (error.name === "AbortError" || this.signal.aborted) return undefined;
      toast(error.message);
      return undefined;
    }
  }
  close() {
    this.controller.abort();
    this.timers.forEach(clearTimeout);
    if (this.keyHandler) document.removeEventListener("keydown", this.keyHandler);
  }
}

const pages = { inbox: inboxPage, sessions: sessionsPage, memories: memoriesPage, usage: usagePage };

function currentRoute() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { name: path || "inbox", params: new URLSearchParams(query || "") };
}

function go(name, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString();
  const hash = `#/${name}${query ? `?${query}` : ""}`;
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** Replaces the address without opening the page again (a selection within a page). */
function remember(name, params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
  history.replaceState(null, "", `#/${name}${query ? `?${query}` : ""}`);
}

function route() {
  app.page?.close();
  app.page = new PageScope();
  applyWords();
  const main = document.getElementById("main");
  main.replaceChildren();
  if (!app.who) {
    signInPage(main, app.page);
    return;
  }
  const { name, params } = currentRoute();
  const page = pages[name] ? name : "inbox";
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.page === page);
  pages[page](main, params, app.page);
}

function applyWords() {
  document.documentElement.lang = app.lang === "zh" ? "zh-CN" : "en";
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  document.getElementById("lang").textContent = t("lang.other");
  document.title = `agentd · ${t("nav." + (currentRoute().name in pages ? currentRoute().name : "inbox"))}`;
  const who = document.getElementById("who");
  const w = app.who;
  who.textContent = !w ? "" : w.open_mode ? t("who.open", { tenant: w.tenant_id })
    : w.user_id ? t("who.user", { user: w.user_id, tenant: w.tenant_id })
    : w.operator ? t("who.operator", { key: w.key_id, tenant: w.tenant_id })
    : t("who.tenant", { key: w.key_id, tenant: w.tenant_id });
  document.getElementById("nav").hidden = !w;
  document.getElementById("signout").hidden = !w || w.open_mode;
}

// MARK: sign-in

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  app.key = null;
  app.who = null;
  app.signInMessage = message;
  route();
}

function signInPage(main, scope) {
  const input = h("input", { type: "password", id: "signin-key", autocomplete: "off", spellcheck: "false", required: true, placeholder: "agentd_…" });
  const error = h("p", { class: "error", id: "signin-error", role: "alert" }, app.signInMessage || "");
  app.signInMessage = null;
  const submit = h("button", { class: "primary", type: "submit", id: "signin-submit" }, t("signin.submit"));
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      submit.disabled = true;
      error.textContent = "";
      try {
        app.who = await api("GET", "/system/whoami", undefined, { key, signal: scope.signal });
        app.key = key;
        sessionStorage.setItem(KEY_STORAGE, key);
        route();
      } catch (failure) {
        if (failure.name !== "AbortError") error.textContent = failure.message;
      } finally {
        submit.disabled = false;
      }
    },
  }, h("label", { for: "signin-key" }, t("signin.key")), input, submit, h("p", { class: "hint" }, t("signin.help")), error);
  main.append(h("section", { class: "panel signin" }, h("h1", {}, t("signin.title")), form));
  input.focus();
}

// MARK: the inbox

function interruptKey(item) {
  return [item.tenant_id, item.user_id, item.session_id, item.task_id, item.tool_call_id].join("\u0000");
}

function inboxPage(main, params, scope) {
  // deciding: a decision is on its way (no second one until it is answered); shownAt: when the
  // detail last changed (a key pressed just after is not taken as a decision on what appeared);
  // held: the approval being edited went away (decided elsewhere, expired), and the pane says so
  // until the person moves on; asked: the newest list request, so that an older answer is dropped.
  const state = {
    items: [], current: 0, selected: new Set(), next: null, extra: 0, editing: null, conversation: new Map(),
    deciding: false, shownAt: 0, held: false, asked: 0,
  };
  const SETTLE_MS = 600;
  const userFilter = h("input", { id: "inbox-user", placeholder: t("inbox.any"), value: params.get("user") || "", size: 12, "aria-label": t("inbox.user") });
  const toolFilter = h("input", { id: "inbox-tool", placeholder: t("inbox.any"), value: params.get("tool") || "", size: 12, "aria-label": t("inbox.tool") });
  const order = h("select", { id: "inbox-order", "aria-label": "order" },
    h("option", { value: "newest" }, t("inbox.newest")), h("option", { value: "oldest" }, t("inbox.oldest")));
  order.value = params.get("order") === "oldest" ? "oldest" : "newest";
  if (app.who.user_id) { userFilter.value = app.who.user_id; userFilter.readOnly = true; }
  const selectAll = h("input", { type: "checkbox", id: "inbox-select-all", "aria-label": t("inbox.selectAll") });
  const acceptSelected = h("button", { id: "inbox-accept-selected", type: "button" });
  const rejectSelected = h("button", { id: "inbox-reject-selected", type: "button", class: "danger" });
  const list = h("ul", { class: "list", id: "inbox-list", role: "listbox", "aria-label": t("inbox.title") });
  const detail = h("section", { class: "panel", id: "inbox-detail", "aria-live": "polite" });
  const more = h("button", { id: "inbox-more", type: "button", hidden: true }, t("inbox.more"));

  const filters = () => {
    const query = new URLSearchParams({ order: order.value });
    if (userFilter.value.trim()) query.set("user_id", userFilter.value.trim());
    if (toolFilter.value.trim()) query.set("tool", toolFilter.value.trim());
    return query;
  };
  const refilter = () => {
    remember("inbox", { user: app.who.user_id ? "" : userFilter.value.trim(), tool: toolFilter.value.trim(), order: order.value === "oldest" ? "oldest" : "" });
    state.extra = 0;
    scope.guard(refresh());
  };
  userFilter.addEventListener("change", refilter);
  toolFilter.addEventListener("change", refilter);
  order.addEventListener("change", refilter);

  async function refresh() {
    const query = filters();
    query.set("limit", String(Math.min(200, 50 + state.extra)));
    const asked = ++state.asked;
    const page = await api("GET", `/agent/interrupts?${query}`, undefined, { signal: scope.signal });
    if (asked !== state.asked || state.deciding) return;
    const currentKey = state.items[state.current] && interruptKey(state.items[state.current]);
    state.items = page.interrupts;
    state.next = page.next_cursor;
    const keys = new Set(state.items.map(interruptKey));
    for (const key of [...state.selected]) if (!keys.has(key)) state.selected.delete(key);
    const index = state.items.findIndex((item) => interruptKey(item) === currentKey);
    state.current = index >= 0 ? index : Math.min(state.current, Math.max(0, state.items.length - 1));
    setInboxCount(state.items.length, Boolean(state.next));
    draw();
  }

  async function loadMore() {
    if (!state.next) return;
    const query = filters();
    query.set("cursor", state.next);
    query.set("limit", "50");
    const asked = ++state.asked;
    const page = await api("GET", `/agent/interrupts?${query}`, undefined, { signal: scope.signal });
    if (asked !== state.asked) return;
    state.items = state.items.concat(page.interrupts);
    state.extra += page.interrupts.length;
    state.next = page.next_cursor;
    draw();
  }
  more.addEventListener("click", () => scope.guard(loadMore()));

  function draw() {
    const drawnKey = detail.dataset.key;
    // Rows are drawn anew: the keyboard's place goes to the current row again.
    const hadFocus = list.contains(document.activeElement) && document.activeElement.tagName === "LI";
    list.replaceChildren(...state.items.map((item, index) => {
      const key = interruptKey(item);
      const box = h("input", {
        type: "checkbox", checked: state.selected.has(key), "aria-label": t("inbox.select"), class: "pick",
        onclick: (event) => { event.stopPropagation(); toggle(index); },
      });
      const waited = Date.now() / 1000 - item.created_at;
      return h("li", {
        class: index === state.current ? "current" : "", role: "option", "aria-selected": String(index === state.current), tabindex: -1,
        "data-key": key, "data-task": item.task_id, onclick: () => setCurrent(index),
      }, box, h("div", { class: "main" },
        h("div", { class: "title" }, item.tool),
        h("div", { class: "sub" }, `${item.user_id} · ${item.session_id} · ${item.task_id}`),
        h("div", { class: "sub" }, t("inbox.waiting", { age: duration(waited) }), item.expires_at ? ` · ${relative(item.expires_at)}` : "",
          item.last_query ? ` · ${item.last_query}` : "")));
    }));
    if (!state.items.length) list.replaceChildren(h("li", { class: "empty", id: "inbox-empty" }, t("inbox.empty")));
    else if (hadFocus) list.children[state.current]?.focus();
    more.hidden = !state.next;
    const count = state.selected.size;
    acceptSelected.textContent = t("inbox.acceptSelected", { n: count });
    rejectSelected.textContent = t("inbox.rejectSelected", { n: count });
    acceptSelected.disabled = rejectSelected.disabled = count === 0;
    selectAll.checked = count > 0 && count === state.items.length;
    const item = state.items[state.current];
    if (state.editing && drawnKey && !state.items.some((other) => interruptKey(other) === drawnKey)) {
      // What was being edited is no longer waiting: say so, and do not move the keyboard onto another approval.
      state.editing = null;
      state.held = true;
      detail.dataset.key = "";
      detail.replaceChildren(h("p", { class: "error", id: "inbox-gone" }, t("inbox.gone")));
      list.children[state.current]?.focus();
      return;
    }
    if (state.held) return;
    // The detail is drawn again only when another approval is shown, so that an open editor survives a refresh.
    if (!item) { detail.dataset.key = ""; detail.replaceChildren(h("p", { class: "muted" }, t("inbox.pick"))); return; }
    if (drawnKey !== interruptKey(item)) { state.shownAt = Date.now(); drawDetail(item); }
  }

  function setCurrent(index, focus = false) {
    if (!state.items.length) return;
    state.current = Math.max(0, Math.min(state.items.length - 1, index));
    state.editing = null;
    state.held = false;
    draw();
    const row = list.children[state.current];
    row?.scrollIntoView({ block: "nearest" });
    if (focus) row?.focus();
  }

  function toggle(index) {
    const item = state.items[index];
    if (!item) return;
    const key = interruptKey(item);
    if (state.selected.has(key)) state.selected.delete(key);
    else state.selected.add(key);
    draw();
  }

  selectAll.addEventListener("change", () => {
    if (selectAll.checked) state.items.forEach((item) => state.selected.add(interruptKey(item)));
    else state.selected.clear();
    draw();
  });

  function drawDetail(item) {
    detail.dataset.key = interruptKey(item);
    const data = item.interrupt_data || {};
    const request = data.action_request || {};
    const config = data.config || {};
    const mine = item.tenant_id === app.who.tenant_id;
    const editor = h("div", { id: "inbox-editor", hidden: true });
    const button = (id, label, shortcut, allowed, onclick, cls = "") => h("button", {
      id, type: "button", class: cls, disabled: !mine || allowed === false, onclick, "aria-keyshortcuts": shortcut,
    }, label, " ", h("kbd", {}, shortcut));
    const conversation = h("div", { class: "chat", id: "inbox-conversation" }, h("p", { class: "muted" }, t("loading")));
    detail.replaceChildren(
      h("h2", {}, request.action || item.tool),
      ...(mine ? [] : [h("p", { class: "error" }, t("inbox.otherTenant", { tenant: item.tenant_id }))]),
      h("div", { class: "actions" },
        button("decide-accept", t("inbox.accept"), "a", config.allow_accept, () => decide(item, "accept"), "primary"),
        button("decide-edit", t("inbox.edit"), "e", config.allow_edit, () => openEditor(item, "edit")),
        button("decide-reject", t("inbox.reject"), "r", config.allow_ignore, () => decide(item, "reject"), "danger"),
        button("decide-respond", t("inbox.respond"), "p", config.allow_respond, () => openEditor(item, "response"))),
      editor,
      h("h3", {}, t("inbox.args")),
      h("pre", { id: "inbox-args" }, json(request.args ?? {})),
      h("h3", {}, t("inbox.description")),
      renderMarkdown(data.description || ""),
      h("dl", { class: "kv" },
        h("dt", {}, t("inbox.user")), h("dd", {}, item.user_id),
        h("dt", {}, t("nav.sessions")), h("dd", {}, h("a", { href: `#/sessions?user=${enc(item.user_id)}&session=${enc(item.session_id)}&task=${enc(item.task_id)}` }, `${item.session_id} / ${item.task_id}`)),
        h("dt", {}, t("task.agent")), h("dd", {}, item.agent_id),
        h("dt", {}, t("task.updated")), h("dd", {}, when(item.created_at)),
        h("dt", {}, t("inbox.deadline")), h("dd", {}, item.expires_at ? t("inbox.expires", { when: relative(item.expires_at) }) : t("inbox.never"))),
      h("h3", {}, t("inbox.conversation")),
      conversation);
    if (mine) scope.guard(loadConversation(item, conversation));
    else conversation.replaceChildren(h("p", { class: "muted" }, t("inbox.noConversation")));
  }

  async function loadConversation(item, target) {
    const cacheKey = interruptKey(item);
    let messages = state.conversation.get(cacheKey);
    if (!messages) {
      messages = [];
      // Earlier turns of the session (the last three), then this task's own steps so far.
      const tasks = await api("GET", `/agent/tasks/${enc(item.user_id)}/${enc(item.session_id)}`, undefined, { signal: scope.signal });
      const ids = tasks.task_ids;
      const earlier = ids.slice(0, Math.max(0, ids.indexOf(item.task_id))).slice(-3);
      const statuses = await Promise.all(earlier.map((id) => api("GET", `/agent/status/${taskPath({ ...item, task_id: id })}`, undefined, { signal: scope.signal })));
      for (const status of statuses) messages.push(...(status.last_response?.result?.messages || []));
      messages.push({ type: "human", content: item.last_query });
      const events = await api("GET", `/agent/events/${taskPath(item)}?format=json`, undefined, { signal: scope.signal });
      for (const event of events) if (event.type === "message" || event.type === "tool.result") messages.push(event.message);
      state.conversation.set(cacheKey, messages);
    }
    target.replaceChildren(...messages.map(messageView));
    if (!messages.length) target.replaceChildren(h("p", { class: "muted" }, t("inbox.noConversation")));
  }

  function openEditor(item, type) {
    const editor = detail.querySelector("#inbox-editor");
    if (!editor || item.tenant_id !== app.who.tenant_id) return;
    state.editing = type;
    const area = h("textarea", { id: "inbox-editor-text", rows: type === "edit" ? 8 : 4, spellcheck: type === "response" ? "true" : "false" });
    area.value = type === "edit" ? json(item.interrupt_data?.action_request?.args ?? {}) : "";
    const error = h("p", { class: "error", id: "inbox-editor-error", role: "alert" });
    const submit = () => {
      let args;
      if (type === "edit") {
        try {
          args = JSON.parse(area.value);
        } catch (failure) {
          error.textContent = t("inbox.badJSON", { detail: failure.message });
          return;
        }
        if (!args || typeof args !== "object" || Array.isArray(args)) { error.textContent = t("inbox.argsObject"); return; }
        decide(item, "edit", { args });
      } else {
        if (!area.value.trim()) return;
        decide(item, "response", { args: area.value });
      }
    };
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
      if (event.key === "Escape") { event.preventDefault(); closeEditor(); }
    });
    editor.replaceChildren(
      h("p", { class: "hint" }, t(type === "edit" ? "inbox.editHelp" : "inbox.respondHelp")), area, error,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "primary", id: "inbox-editor-submit", onclick: submit }, t(type === "edit" ? "inbox.saveAccept" : "inbox.send")),
        h("button", { type: "button", id: "inbox-editor-cancel", onclick: closeEditor }, t("inbox.cancel"))));
    editor.hidden = false;
    area.focus();
  }

  function closeEditor() {
    state.editing = null;
    const editor = detail.querySelector("#inbox-editor");
    if (editor) { editor.hidden = true; editor.replaceChildren(); }
    list.children[state.current]?.focus();
  }

  async function decide(item, type, args) {
    if (item.tenant_id !== app.who.tenant_id || state.deciding) return;
    // The call shown: if someone else decided it and the task asked again, this is a 409, not a decision on the new call.
    const body = { user_id: item.user_id, session_id: item.session_id, task_id: item.task_id, tool_call_id: item.tool_call_id, response_type: type };
    if (args) body.args = args;
    state.deciding = true;
    let done;
    try {
      done = await scope.guard(api("POST", "/agent/resume", body, { signal: scope.signal }));
    } finally {
      state.deciding = false;
    }
    if (!done) return;
    toast(t("inbox.decided", { decision: t(`decision.${type}`), tool: item.tool, user: item.user_id }));
    removeDecided([interruptKey(item)]);
    await scope.guard(refresh());
  }

  async function decideSelected(type) {
    const chosen = state.items.filter((item) => state.selected.has(interruptKey(item)) && item.tenant_id === app.who.tenant_id);
    if (!chosen.length || state.deciding) return;
    const decided = [];
    const refused = [];
    state.deciding = true;
    try {
      // The service takes at most BATCH_LIMIT decisions in one request.
      for (let start = 0; start < chosen.length; start += BATCH_LIMIT) {
        const part = chosen.slice(start, start + BATCH_LIMIT);
        const decisions = part.map((item) => ({
          user_id: item.user_id, session_id: item.session_id, task_id: item.task_id, tool_call_id: item.tool_call_id, response_type: type,
        }));
        const answer = await scope.guard(api("POST", "/agent/resume/batch", { decisions }, { signal: scope.signal }));
        if (!answer) break;
        answer.results.forEach((result, index) => (result.status_code === 200 ? decided : refused).push([part[index], result]));
      }
    } finally {
      state.deciding = false;
    }
    if (!decided.length && !refused.length) return;
    toast(t("inbox.batchDone", { ok: decided.length, failed: refused.length }) + (refused.length ? `: ${refused[0][1].detail}` : ""));
    removeDecided(decided.map(([item]) => interruptKey(item)));
    await scope.guard(refresh());
  }
  acceptSelected.addEventListener("click", () => decideSelected("accept"));
  rejectSelected.addEventListener("click", () => decideSelected("reject"));

  function removeDecided(keys) {
    const gone = new Set(keys);
    state.editing = null;
    state.items = state.items.filter((item) => !gone.has(interruptKey(item)));
    keys.forEach((key) => state.selected.delete(key));
    state.current = Math.min(state.current, Math.max(0, state.items.length - 1));
    detail.dataset.key = "";
    draw();
    list.children[state.current]?.focus();
  }

  scope.onKey((event) => {
    if (event.target.matches?.("textarea, select, input:not([type=checkbox])") || event.altKey || event.ctrlKey || event.metaKey) return;
    // A held-down key repeats; a decision is one deliberate press on what has been on screen a
    // moment (A and R act on what was ticked, not on what is shown).
    const onShown = ["a", "r", "e", "p"].includes(event.key);
    const onTicked = ["A", "R"].includes(event.key);
    if ((onShown || onTicked) && (event.repeat || state.deciding) || (onShown && (state.held || Date.now() - state.shownAt < SETTLE_MS))) {
      event.preventDefault();
      return;
    }
    const item = state.items[state.current];
    const actions = {
      j: () => setCurrent(state.current + 1, true), ArrowDown: () => setCurrent(state.current + 1, true),
      k: () => setCurrent(state.current - 1, true), ArrowUp: () => setCurrent(state.current - 1, true),
      x: () => toggle(state.current),
      a: () => item && item.interrupt_data?.config?.allow_accept !== false && decide(item, "accept"),
      r: () => item && item.interrupt_data?.config?.allow_ignore !== false && decide(item, "reject"),
      e: () => item && item.interrupt_data?.config?.allow_edit !== false && openEditor(item, "edit"),
      p: () => item && item.interrupt_data?.config?.allow_respond !== false && openEditor(item, "response"),
      A: () => decideSelected("accept"),
      R: () => decideSelected("reject"),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  main.append(
    h("h1", {}, t("inbox.title")),
    h("div", { class: "toolbar" },
      h("label", {}, t("inbox.user"), userFilter), h("label", {}, t("inbox.tool"), toolFilter), order,
      h("label", {}, selectAll, t("inbox.selectAll")), acceptSelected, rejectSelected),
    h("p", { class: "hint", id: "inbox-keys" }, t("inbox.keys")),
    h("div", { class: "split" }, h("div", {}, list, more), detail));
  draw();
  scope.every(INBOX_POLL_MS, refresh);
}

/** The number beside "Inbox" in the bar. */
function setInboxCount(count, more) {
  document.getElementById("inbox-count").textContent = count ? `${count}${more ? "+" : ""}` : "";
}

/** A message in LangChain's dict style as a chat bubble. */
function messageView(message) {
  const type = message?.type || "ai";
  const who = type === "human" ? t("role.human") : type === "tool" ? t("role.tool", { name: message.name || "" }) : t("role.ai");
  const calls = (message.tool_calls || []).map((call) => h("pre", {}, `${t("event.calls", { tool: call.name })} ${json(call.args ?? {})}`));
  const content = typeof message.content === "string" ? message.content : json(message.content);
  return h("div", { class: `msg ${type}` }, h("span", { class: "who" }, who),
    type === "ai" ? renderMarkdown(content) : h("div", {}, content), calls);
}

// MARK: sessions and tasks

/** A user picker: free text, suggestions from /system/info; fixed for a user key. */
function userPicker(initial, onOpen, scope, id) {
  const input = h("input", { id, value: initial || app.who.user_id || "", list: `${id}-users`, size: 16, "aria-label": t("sessions.user"), autocomplete: "off" });
  const users = h("datalist", { id: `${id}-users` });
  if (app.who.user_id) input.readOnly = true;
  else {
    scope.guard(api("GET", "/system/info", undefined, { signal: scope.signal }).then((info) => {
      users.replaceChildren(...(info.active_users || []).slice(0, 500).map((user) => h("option", { value: user })));
    }));
  }
  const open = () => { if (input.value.trim()) onOpen(input.value.trim()); };
  input.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
  return h("div", { class: "toolbar" }, h("label", {}, t("sessions.user"), input), users,
    h("button", { type: "button", id: `${id}-open`, class: "primary", onclick: open }, t("sessions.open")));
}

function sessionsPage(main, params, scope) {
  const user = app.who.user_id || params.get("user") || "";
  let session = params.get("session") || "";
  let task = params.get("task") || "";
  main.append(h("h1", {}, t("sessions.title")), userPicker(user, (value) => go("sessions", { user: value }), scope, "sessions-user"));
  if (!user) { main.append(h("p", { class: "muted" }, t("sessions.pickUser"))); return; }
  const sessionList = h("ul", { class: "list", id: "session-list" });
  const taskList = h("ul", { class: "list", id: "task-list" });
  const detail = h("section", { class: "panel", id: "task-detail" }, h("p", { class: "muted" }, t("sessions.pick")));
  main.append(h("div", { class: "split three" },
    h("div", {}, h("h2", {}, t("sessions.list")), sessionList),
    h("div", {}, h("h2", {}, t("sessions.tasks")), taskList),
    detail));
  const statuses = new Map();
  const watching = new Set();
  let detailScope = null;

  async function loadSessions() {
    const [ids, active] = await Promise.all([
      api("GET", `/agent/sessionids/${enc(user)}`, undefined, { signal: scope.signal }),
      api("GET", `/agent/active/sessionid/${enc(user)}`, undefined, { signal: scope.signal }),
    ]);
    const sessions = ids.session_ids;
    if (!session && sessions.length) session = active.active_session_id || sessions[sessions.length - 1];
    sessionList.replaceChildren(...sessions.slice().reverse().map((id) => h("li", {
      class: id === session ? "current" : "", "data-session": id, tabindex: 0,
      onclick: () => { session = id; task = ""; remember("sessions", { user, session }); scope.guard(loadSessions()); },
    }, h("div", { class: "main" }, h("div", { class: "title" }, id),
      id === active.active_session_id ? h("div", { class: "sub" }, t("sessions.active")) : null))));
    if (!sessions.length) sessionList.replaceChildren(h("li", { class: "empty" }, t("sessions.none")));
    if (session) await loadTasks();
  }

  async function loadTasks() {
    if (!session) return;
    const shown = session;
    const ids = (await api("GET", `/agent/tasks/${enc(user)}/${enc(shown)}`, undefined, { signal: scope.signal })).task_ids.slice(-30).reverse();
    // A settled task does not change; the others are read again unless a long poll watches them.
    const settled = (id) => ["completed", "error", "cancelled"].includes(statuses.get(`${shown}/${id}`)?.status);
    await Promise.all(ids.filter((id) => !settled(id) && !watching.has(`${shown}/${id}`))
      .map(async (id) => statuses.set(`${shown}/${id}`, await api("GET", `/agent/status/${enc(user)}/${enc(shown)}/${enc(id)}`, undefined, { signal: scope.signal }))));
    if (shown !== session) return;
    if (!task && ids.length) task = ids[0];
    drawTasks(ids);
    // The task shown is followed by its event stream; the other running ones by a long poll each.
    for (const id of ids) if (id !== task && statuses.get(`${shown}/${id}`)?.status === "running") scope.guard(watch(shown, id));
    if (task && detail.dataset.task !== `${shown}/${task}`) showTask(task);
  }

  function drawTasks(ids) {
    taskList.replaceChildren(...ids.map((id) => {
      const status = statuses.get(`${session}/${id}`) || { status: "running" };
      return h("li", {
        class: id === task ? "current" : "", "data-task": id, tabindex: 0,
        onclick: () => { task = id; remember("sessions", { user, session, task }); drawTasks(ids); showTask(id); },
      }, h("div", { class: "main" }, h("div", { class: "title" }, id, " ", statusBadge(status.status)),
        h("div", { class: "sub" }, status.last_query || ""), h("div", { class: "sub" }, status.last_updated ? relative(status.last_updated) : "")));
    }));
    if (!ids.length) taskList.replaceChildren(h("li", { class: "empty" }, t("sessions.noTasks")));
  }

  /** Long-polls a running task's status (`?wait=`) until it pauses or ends. */
  async function watch(shownSession, id) {
    const key = `${shownSession}/${id}`;
    if (watching.has(key)) return;
    watching.add(key);
    try {
      while (!scope.signal.aborted && shownSession === session) {
        const status = await api("GET", `/agent/status/${enc(user)}/${enc(shownSession)}/${enc(id)}?wait=25`, undefined, { signal: scope.signal });
        statuses.set(key, status);
        if (shownSession === session) {
          const row = taskList.querySelector(`li[data-task="${CSS.escape(id)}"] .status`);
          row?.replaceWith(statusBadge(status.status));
          if (id === task) detail.querySelector("#task-status")?.replaceWith(Object.assign(statusBadge(status.status), { id: "task-status" }));
        }
        if (status.status !== "running") break;
      }
    } finally {
      watching.delete(key);
    }
  }

  function showTask(id) {
    detailScope?.abort();
    detailScope = new AbortController();
    const signal = AbortSignal.any([scope.signal, detailScope.signal]);
    const key = `${session}/${id}`;
    const status = statuses.get(key) || { status: "running" };
    detail.dataset.task = key;
    const chat = h("div", { class: "chat", id: "task-events" });
    const item = { user_id: user, session_id: session, task_id: id };
    detail.replaceChildren(
      h("h2", {}, id, " ", Object.assign(statusBadge(status.status), { id: "task-status" }), " ", h("span", { class: "hint", id: "task-live" }, t("sessions.live"))),
      h("dl", { class: "kv" },
        h("dt", {}, t("task.query")), h("dd", {}, status.last_query || "–"),
        h("dt", {}, t("task.updated")), h("dd", {}, when(status.last_updated)),
        h("dt", {}, t("task.agent")), h("dd", {}, status.agent_id || "default"),
        status.message ? [h("dt", {}, t("task.message")), h("dd", {}, status.message)] : null),
      ...(status.status === "interrupted" ? [h("p", {}, h("a", { href: `#/inbox?user=${enc(user)}` }, t("task.openInbox")))] : []),
      chat);
    if (status.last_query) chat.append(messageView({ type: "human", content: status.last_query }));
    const live = new Map();
    scope.guard(followEvents(item, (event) => {
      const line = (text, cls = "") => chat.append(h("div", { class: `msg event ${cls}`, "data-type": event.type }, text));
      switch (event.type) {
        case "message.delta": {
          let bubble = live.get(event.position);
          if (!bubble) {
            bubble = h("div", { class: "msg ai live" }, h("span", { class: "who" }, t("role.writing")), h("div", { class: "text" }));
            live.set(event.position, bubble);
            chat.append(bubble);
          }
          const text = bubble.querySelector(".text");
          text.textContent = (event.restart ? "" : text.textContent) + (event.content || "");
          break;
        }
        case "message":
        case "tool.result": {
          const view = messageView(event.message);
          view.dataset.type = event.type;
          const bubble = live.get(event.position);
          if (bubble) { bubble.replaceWith(view); live.delete(event.position); } else chat.append(view);
          break;
        }
        case "task.queued": line(t("event.queued", { reason: event.reason })); break;
        case "task.running": line(t("event.running", { attempt: event.attempt })); break;
        case "interrupt": line(t("event.interrupt", { tool: event.interrupt_data?.action_request?.action }), "warn"); break;
        case "decision": line(t("event.decision", { decision: t(`decision.${event.response_type}`) })); break;
        case "task.completed": line(t("event.completed")); break;
        case "task.error": line(t("event.error", { message: event.message })); break;
        case "task.cancelled": line(t("event.cancelled", { message: event.message })); break;
        default: break;
      }
      if (["interrupt", "decision", "task.completed", "task.error", "task.cancelled"].includes(event.type) && key === `${session}/${id}`) {
        scope.guard(api("GET", `/agent/status/${enc(user)}/${enc(session)}/${enc(id)}`, undefined, { signal }).then((fresh) => {
          statuses.set(key, fresh);
          detail.querySelector("#task-status")?.replaceWith(Object.assign(statusBadge(fresh.status), { id: "task-status" }));
          taskList.querySelector(`li[data-task="${CSS.escape(id)}"] .status`)?.replaceWith(statusBadge(fresh.status));
        }));
      }
    }, signal).then((ended) => {
      if (signal.aborted) return;
      const hint = detail.querySelector("#task-live");
      if (hint) hint.textContent = ended ? "" : t("sessions.notLive");
    }));
  }

  scope.every(TASKS_POLL_MS, loadSessions);
}

// MARK: long-term memories

function memoriesPage(main, params, scope) {
  const user = app.who.user_id || params.get("user") || "";
  main.append(h("h1", {}, t("memories.title")), userPicker(user, (value) => go("memories", { user: value }), scope, "memories-user"));
  if (!user) { main.append(h("p", { class: "muted" }, t("sessions.pickUser"))); return; }
  const search = h("input", { id: "memory-search", type: "search", value: params.get("q") || "", placeholder: t("memories.searchPlaceholder"), size: 28, "aria-label": t("memories.search") });
  const list = h("ul", { class: "list", id: "memory-list" });
  const detail = h("section", { class: "panel", id: "memory-detail" }, h("p", { class: "muted" }, t("memories.pick")));
  const text = h("textarea", { id: "memory-new", rows: 2, placeholder: t("memories.addPlaceholder") });
  let memories = [];
  let current = null;

  async function load() {
    const q = search.value.trim();
    remember("memories", { user, q });
    const answer = await api("GET", `/agent/memory/${enc(user)}?limit=100${q ? `&q=${enc(q)}` : ""}`, undefined, { signal: scope.signal });
    memories = answer.memories;
    draw();
  }

  function draw() {
    list.replaceChildren(...memories.map((memory) => h("li", {
      class: memory.memory_id === current ? "current" : "", "data-memory": memory.memory_id, tabindex: 0,
      onclick: () => { current = memory.memory_id; draw(); },
      onkeydown: (event) => { if (event.key === "Enter") { current = memory.memory_id; draw(); } },
    }, h("div", { class: "main" }, h("div", { class: "title" }, memory.memory_info),
      h("div", { class: "sub" }, relative(memory.created_at), memory.score !== undefined ? ` · ${t("memories.score")} ${number(memory.score, 3)}` : "")))));
    if (!memories.length) list.replaceChildren(h("li", { class: "empty" }, t("memories.none")));
    const memory = memories.find((m) => m.memory_id === current);
    if (!memory) { detail.replaceChildren(h("p", { class: "muted" }, t("memories.pick"))); return; }
    const confirm = h("div", { id: "memory-confirm", hidden: true },
      h("p", {}, t("memories.confirm")),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "danger", id: "memory-delete-yes", onclick: () => scope.guard(remove(memory)) }, t("memories.yes")),
        h("button", { type: "button", id: "memory-delete-no", onclick: () => { confirm.hidden = true; } }, t("memories.no"))));
    detail.replaceChildren(
      h("p", { id: "memory-text" }, memory.memory_info),
      h("dl", { class: "kv" }, h("dt", {}, t("memories.id")), h("dd", {}, memory.memory_id),
        h("dt", {}, t("memories.created")), h("dd", {}, when(memory.created_at))),
      h("div", { class: "actions" }, h("button", { type: "button", class: "danger", id: "memory-delete", onclick: () => { confirm.hidden = false; } }, t("memories.delete"))),
      confirm);
  }

  async function remove(memory) {
    await api("DELETE", `/agent/memory/${enc(user)}/${enc(memory.memory_id)}`, undefined, { signal: scope.signal });
    toast(t("memories.deleted"));
    current = null;
    await load();
  }

  async function add() {
    const value = text.value.trim();
    if (!value) return;
    await api("POST", "/agent/write/longterm", { user_id: user, memory_info: value }, { signal: scope.signal });
    text.value = "";
    toast(t("memories.added"));
    await load();
  }

  search.addEventListener("keydown", (event) => { if (event.key === "Enter") scope.guard(load()); });
  main.append(
    h("div", { class: "toolbar" }, search, h("button", { type: "button", id: "memory-search-go", onclick: () => scope.guard(load()) }, t("memories.search"))),
    h("div", { class: "split" }, list, h("div", {}, detail,
      h("div", { class: "panel" }, text, h("div", { class: "actions" }, h("button", { type: "button", id: "memory-add", onclick: () => scope.guard(add()) }, t("memories.add")))))));
  scope.guard(load());
}

// MARK: usage

function usagePage(main, params, scope) {
  const days = h("select", { id: "usage-days", "aria-label": "days" }, ...[7, 30, 90].map((n) => h("option", { value: String(n) }, t("usage.days", { n }))));
  days.value = ["7", "30", "90"].includes(params.get("days")) ? params.get("days") : "30";
  const body = h("div", { id: "usage-body" }, h("p", { class: "muted" }, t("loading")));
  days.addEventListener("change", () => { remember("usage", { days: days.value }); scope.guard(load()); });
  main.append(h("h1", {}, t("usage.title")), h("div", { class: "toolbar" }, days), body);

  const table = (id, columns, rows) => h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, ...columns.map(([label, , numeric]) => h("th", { class: numeric ? "num" : "" }, label)))),
    h("tbody", {}, ...rows.map((row) => h("tr", {}, ...columns.map(([, value, numeric]) => h("td", { class: numeric ? "num" : "" }, value(row))))))));

  async function load() {
    const tenantWide = !app.who.user_id;
    const [usage, approvals, latency] = await Promise.all([
      api("GET", `/reports/usage?days=${days.value}`, undefined, { signal: scope.signal }),
      tenantWide ? api("GET", "/reports/approvals", undefined, { signal: scope.signal }) : null,
      tenantWide ? api("GET", `/reports/latency?days=${days.value}`, undefined, { signal: scope.signal }) : null,
    ]);
    const tenants = new Set([...usage.rows, ...(approvals?.rows || []), ...(latency?.rows || [])].map((row) => row.tenant_id));
    const tenantColumn = tenants.size > 1 ? [[t("usage.tenant"), (row) => row.tenant_id]] : [];
    const parts = [];
    const perDay = new Map();
    for (const row of usage.rows) perDay.set(row.day, (perDay.get(row.day) || 0) + row.prompt_tokens + row.completion_tokens);
    const chronological = [...perDay.entries()].sort(([a], [b]) => a.localeCompare(b));
    const peak = Math.max(1, ...chronological.map(([, tokens]) => tokens));
    parts.push(h("h2", {}, t("usage.tokensPerDay")));
    if (chronological.length) {
      parts.push(h("div", { class: "bars", id: "usage-bars", role: "img", "aria-label": t("usage.tokensPerDay") },
        ...chronological.map(([day, tokens]) => {
          const bar = h("div", { title: `${day}: ${number(tokens)}` });
          bar.style.height = `${Math.max(1, Math.round((tokens / peak) * 100))}%`;
          return bar;
        })));
      parts.push(table("usage-table", [
        ...tenantColumn, [t("usage.day"), (row) => row.day], [t("usage.users"), (row) => number(row.users), true],
        [t("usage.calls"), (row) => number(row.model_calls), true], [t("usage.failed"), (row) => number(row.failed_calls), true],
        [t("usage.prompt"), (row) => number(row.prompt_tokens), true], [t("usage.completion"), (row) => number(row.completion_tokens), true],
        [t("usage.latency"), (row) => number(row.avg_latency_ms, 1), true]], usage.rows));
    } else parts.push(h("p", { class: "muted" }, t("usage.none")));
    if (!tenantWide) parts.push(h("p", { class: "hint" }, t("usage.tenantOnly")));
    else {
      parts.push(h("h2", {}, t("usage.approvals")));
      parts.push(approvals.rows.length ? table("approvals-table", [
        ...tenantColumn, [t("usage.tool"), (row) => row.tool_name], [t("usage.asked"), (row) => number(row.asked), true],
        [t("usage.pending"), (row) => number(row.pending), true], [t("usage.accepted"), (row) => number(row.accepted), true],
        [t("usage.edited"), (row) => number(row.edited), true], [t("usage.rejected"), (row) => number(row.rejected), true],
        [t("usage.responded"), (row) => number(row.responded), true], [t("usage.expired"), (row) => number(row.expired), true],
        [t("usage.rate"), (row) => (row.approval_rate === null ? "–" : `${number(row.approval_rate * 100, 1)} %`), true],
        [t("usage.decideSeconds"), (row) => number(row.avg_seconds_to_decide, 1), true]], approvals.rows) : h("p", { class: "muted" }, t("usage.none")));
      parts.push(h("h2", {}, t("usage.latencyTitle")));
      parts.push(latency.rows.length ? table("latency-table", [
        ...tenantColumn, [t("usage.day"), (row) => row.day], [t("usage.state"), (row) => statusBadge(row.state)],
        [t("usage.tasks"), (row) => number(row.tasks), true], [t("usage.p50"), (row) => number(row.p50_seconds, 3), true],
        [t("usage.p95"), (row) => number(row.p95_seconds, 3), true], [t("usage.attempts"), (row) => number(row.avg_attempts, 2), true]], latency.rows)
        : h("p", { class: "muted" }, t("usage.none")));
    }
    body.replaceChildren(...parts);
  }
  scope.guard(load());
}

// MARK: start

/** Keeps the count beside "Inbox" true on the other pages too. */
function watchInboxCount() {
  setInterval(async () => {
    if (!app.who || document.hidden || currentRoute().name === "inbox") return;
    try {
      const page = await api("GET", "/agent/interrupts?limit=50");
      setInboxCount(page.interrupts.length, Boolean(page.next_cursor));
    } catch {
      // Shown when the inbox opens; a count is not worth a message.
    }
  }, 15000);
}

async function start() {
  document.getElementById("lang").addEventListener("click", () => {
    app.lang = app.lang === "zh" ? "en" : "zh";
    localStorage.setItem(LANG_STORAGE, app.lang);
    route();
  });
  document.getElementById("signout").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", route);
  try {
    if (app.key) {
      app.who = await api("GET", "/system/whoami");
    } else {
      const mode = await api("GET", "/console/mode");
      if (mode.open_mode) app.who = await api("GET", "/system/whoami");
    }
  } catch (error) {
    app.signInMessage = error.message;
  }
  route();
  watchInboxCount();
}

start();
