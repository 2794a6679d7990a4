// The chathub web client: login, conversations, members, history, reconnect.
// Every piece of user text reaches the page through textContent (see dom.js), never as HTML.

import { HELP, parseInput } from "./commands.js";
import { Connection } from "./connection.js";
import { $, clear, el } from "./dom.js";
import { formattedNodes, stripFormatting } from "./format.js";
import { Conversations, fold, isRoom } from "./state.js";

const HISTORY_PAGE = 50;
const TYPING_SEND_EVERY = 3000;
const TYPING_SHOW_FOR = 6000;
const SAVED_NICK = "chathub.nick";
const SAVED_ROOMS = "chathub.rooms";
// the session token of an account login: resumes the session after a reload without the password
const SAVED_TOKEN = "chathub.token";
// the server puts [server] description in <title>; unread counts go in front of it
const pageTitle = document.title;

const convs = new Conversations();
const conn = new Connection();
const app = {
  hello: null,
  me: null,
  account: null,
  loggedIn: false,
  creds: null, // {nick, password, mode}: kept in memory only, to log in again after a reconnect
  reconnecting: false,
  openAfterJoin: null,
  refs: new Map(), // request ref -> what it was for
  nextRef: 1,
  lastTypingSent: 0,
  typingTarget: null,
  loginMode: "guest",
  leftOnPurpose: false, // after /quit or a logout: the saved session is not resumed by itself
};

// -- small helpers -------------------------------------------------------------------------

const storage = {
  get(key, fallback) {
    try {
      const value = localStorage.getItem(key);
      return value === null ? fallback : JSON.parse(value);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch {
      /* private mode: nothing to remember */
    }
  },
};

function send(obj, purpose) {
  if (purpose) {
    obj.ref = app.nextRef++;
    app.refs.set(obj.ref, purpose);
  }
  return conn.send(obj);
}

const isMe = (nick) => app.me !== null && fold(nick) === fold(app.me);

function timeOf(obj) {
  const t = obj && obj.time ? new Date(obj.time) : new Date();
  return Number.isNaN(t.getTime()) ? new Date() : t;
}

const two = (n) => String(n).padStart(2, "0");
const clock = (d) => `${two(d.getHours())}:${two(d.getMinutes())}`;

const mention = { nick: null, pattern: null }; // built once per nick, not per message

function mentionsMe(text) {
  if (!app.me) return false;
  if (mention.nick !== app.me) {
    const escaped = app.me.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    mention.pattern = new RegExp(`(^|[^\\w])${escaped}([^\\w]|$)`, "i");
    mention.nick = app.me;
  }
  return mention.pattern.test(text);
}

function saveRooms() {
  storage.set(SAVED_ROOMS, convs.rooms().filter((c) => c.joined).map((c) => c.name));
}

// -- lines ------------------------------------------------------------------------------------

function lineFromEvent(obj) {
  return {
    id: obj.id,
    time: timeOf(obj),
    kind: obj.type, // message, action, notice
    nick: obj.from ? obj.from.nick : "",
    protocol: obj.from ? obj.from.protocol : "",
    text: obj.text || "",
    mention: obj.from && !isMe(obj.from.nick) && mentionsMe(obj.text || ""),
    // to the room's operators ("@") or voiced members ("+") only
    statusmsg: obj.statusmsg || "",
    // taken back (redact): shown as "message deleted", with who did it and why on hover
    deleted: obj.redacted ? deletedNote(obj.redacted.by, obj.redacted.reason) : null,
  };
}

function deletedNote(by, reason) {
  return `deleted by ${by}${reason ? `: ${reason}` : ""}`;
}

function systemLine(conv, text, obj, kind = "system") {
  addLine(conv, { id: obj && obj.id, time: timeOf(obj), kind, nick: "", text });
}

function addLine(conv, line, { count = true } = {}) {
  const index = conv.add(line);
  if (index < 0) return;
  const active = convs.current === conv;
  if (active) {
    // drawn with whatever else arrives before the next frame, in one DOM update
    if (index === conv.lines.length - 1) frame.lines.push(line);
    else frame.full = true;
    requestFrame();
  }
  const counts = count && (line.kind === "message" || line.kind === "action" || line.kind === "notice");
  if (counts && !isMe(line.nick) && (!active || document.hidden)) {
    conv.unread += 1;
    if (line.mention || conv.kind === "private") conv.mentions += 1;
    frame.sidebar = true;
    requestFrame();
  }
}

function renderLine(line) {
  const time = el("time", { datetime: line.time.toISOString(), title: line.time.toLocaleString() }, clock(line.time));
  if (line.kind === "system" || line.kind === "error") {
    return el("li", { class: line.kind }, time, el("span", { class: "text" }, ...formattedNodes(line.text)));
  }
  const nick = el("span", { class: "nick", style: { color: nickColor(line.nick) } },
    line.kind === "action" ? `* ${line.nick}` : line.kind === "notice" ? `-${line.nick}-` : line.nick);
  if (line.protocol && line.protocol !== "ws" && line.protocol !== "server") {
    nick.append(el("span", { class: "proto", title: `via ${line.protocol}` }, line.protocol));
  }
  if (line.statusmsg) {
    nick.append(el("span", { class: "proto", title: `to ${line.statusmsg === "@" ? "operators" : "voiced members"} only` }, `${line.statusmsg} only`));
  }
  const classes = [line.kind, line.mention ? "mention" : "", line.deleted ? "deleted" : ""].filter(Boolean).join(" ");
  const body = line.deleted ? [el("span", { class: "text", title: line.deleted }, "message deleted")] : messageText(line);
  return el("li", { class: classes, dataset: line.id ? { id: line.id } : {} }, time, nick, ...body);
}

// A message longer than about COLLAPSE_LINES lines (line breaks, or long lines that wrap)
// is shown folded to that height with a "show more" button; the line remembers the choice
// so a redraw keeps it.
const COLLAPSE_LINES = 12;
const COLLAPSE_CHARS = COLLAPSE_LINES * 100;

function isLong(text) {
  if (text.length > COLLAPSE_CHARS) return true;
  let breaks = 0;
  for (let at = text.indexOf("\n"); at >= 0; at = text.indexOf("\n", at + 1)) {
    if (++breaks >= COLLAPSE_LINES) return true;
  }
  return false;
}

function messageText(line) {
  const text = el("span", { class: "text" }, ...formattedNodes(line.text));
  if (!isLong(line.text)) return [text];
  const toggle = el("button", { type: "button", class: "show-more link-button" });
  const show = () => {
    text.classList.toggle("collapsed", !line.expanded);
    toggle.textContent = line.expanded ? "show less" : "show more";
    toggle.setAttribute("aria-expanded", String(Boolean(line.expanded)));
  };
  toggle.addEventListener("click", () => {
    line.expanded = !line.expanded;
    show();
  });
  show();
  return [text, toggle];
}

// as many as style.css's --nick-N colours, each readable on both themes
const NICK_COLOURS = 12;

function nickColor(nick) {
  let h = 0;
  for (const c of fold(nick || "")) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `var(--nick-${h % NICK_COLOURS})`;
}

// -- rendering ---------------------------------------------------------------------------------

function dayLabel(time) {
  return el("li", { class: "day" }, time.toLocaleDateString(undefined, { weekday: "long", month: "long", day: "numeric" }));
}

// A busy room must not freeze the page. What arrives between two frames is drawn in the
// next one as one DOM update (one layout read, one append); the list holds at most
// conv.window lines (DOM_LINES while the reader is at the bottom; "Load older messages"
// widens it, then asks the server); a reader scrolled up is not moved: a "new messages"
// button counts what arrived below.
const DOM_LINES = 300;
const frame = { requested: false, lines: [], full: false, sidebar: false, typing: false, keepTop: false, keepBottom: true };
const drawn = { shown: 0, lastDay: "", unseen: 0 }; // what the message list holds

function requestFrame() {
  if (frame.requested) return;
  frame.requested = true;
  requestAnimationFrame(drawFrame);
}

function drawFrame() {
  frame.requested = false;
  if (frame.sidebar) {
    frame.sidebar = false;
    renderSidebar();
  }
  if (frame.typing) {
    frame.typing = false;
    renderTyping();
  }
  const lines = frame.lines;
  frame.lines = [];
  if (frame.full) {
    const options = { keepTop: frame.keepTop, keepBottom: frame.keepBottom };
    frame.full = false;
    frame.keepTop = false;
    frame.keepBottom = true;
    renderMessages(options);
    return;
  }
  const conv = convs.current;
  if (!conv || !lines.length) return;
  const box = $("messages");
  const list = $("message-list");
  const atBottom = isAtBottom(box);
  const mine = lines.some((line) => isMe(line.nick));
  if ((atBottom || mine) && lines.length >= DOM_LINES) {
    // more arrived than the list keeps: draw only the newest, never what would be trimmed
    conv.window = DOM_LINES;
    renderMessages();
    return;
  }
  const fragment = document.createDocumentFragment();
  let chat = 0;
  for (const line of lines) {
    appendTo(fragment, line);
    if (line.kind === "message" || line.kind === "action" || line.kind === "notice") chat += 1;
  }
  list.append(fragment);
  // at the bottom the list goes back to DOM_LINES; a reader scrolled up loses no line
  // above (at most the conversation's own bound, state.js MAX_LINES, are held)
  if (atBottom || mine) conv.window = DOM_LINES;
  else conv.window = Math.min(Math.max(conv.window || DOM_LINES, drawn.shown), conv.lines.length);
  trimTo(list, conv.window);
  $("load-older").hidden = !hasOlder(conv);
  if (atBottom || mine) {
    box.scrollTop = box.scrollHeight;
    showUnseen(0);
  } else {
    showUnseen(drawn.unseen + chat);
  }
}

const isAtBottom = (box) => box.scrollHeight - box.scrollTop - box.clientHeight < 40;

/** A line (after its day's label when the day changes) at the end of ``parent``. */
function appendTo(parent, line) {
  const day = line.time.toDateString();
  if (day !== drawn.lastDay) {
    parent.append(dayLabel(line.time));
    drawn.lastDay = day;
  }
  parent.append(renderLine(line));
  drawn.shown += 1;
}

/** Remove the oldest lines until ``most`` are left; the first one left starts with its day. */
function trimTo(list, most) {
  if (drawn.shown <= most) return;
  while (drawn.shown > most) {
    const first = list.firstElementChild;
    if (!first.classList.contains("day")) drawn.shown -= 1;
    first.remove();
  }
  while (list.firstElementChild && list.firstElementChild.classList.contains("day")
         && list.firstElementChild.nextElementSibling && list.firstElementChild.nextElementSibling.classList.contains("day")) {
    list.firstElementChild.remove();
  }
  const first = list.firstElementChild;
  const time = first && !first.classList.contains("day") ? first.querySelector("time") : null;
  if (time) list.prepend(dayLabel(new Date(time.dateTime)));
}

const hasOlder = (conv) => conv.lines.length > (conv.window || DOM_LINES) || Boolean(conv.more && app.hello && app.hello.features.history);

function showUnseen(count) {
  drawn.unseen = count;
  const button = $("new-messages");
  button.hidden = count === 0;
  if (count) button.textContent = count === 1 ? "1 new message ↓" : `${count} new messages ↓`;
}

function renderMessages({ keepBottom = false, keepTop = false } = {}) {
  const box = $("messages");
  const list = $("message-list");
  const conv = convs.current;
  const atBottom = isAtBottom(box);
  const fromBottom = box.scrollHeight - box.scrollTop;
  clear(list);
  drawn.shown = 0;
  drawn.lastDay = "";
  if (!conv) return;
  const fragment = document.createDocumentFragment();
  const lines = conv.lines.slice(-(conv.window || DOM_LINES));
  for (const line of lines) appendTo(fragment, line);
  list.append(fragment);
  $("load-older").hidden = !hasOlder(conv);
  if (keepTop) box.scrollTop = box.scrollHeight - fromBottom;
  else if (!keepBottom || atBottom) {
    box.scrollTop = box.scrollHeight;
    showUnseen(0);
  }
}

function renderSidebar() {
  for (const [listId, items] of [["room-list", convs.rooms()], ["private-list", convs.privates()]]) {
    const list = $(listId);
    clear(list);
    for (const conv of items) {
      const classes = [conv === convs.current ? "active" : "", conv.unread ? "unread" : ""].filter(Boolean).join(" ");
      const button = el("button", { type: "button", on: { click: () => activate(conv.name) } },
        el("span", { class: "name" }, conv.name),
        conv.unread ? el("span", { class: "badge", title: `${conv.unread} unread` }, String(conv.unread)) : null);
      if (conv.kind === "room" && !conv.joined) button.classList.add("muted");
      list.append(el("li", { class: classes, dataset: { key: conv.key } }, button));
    }
  }
  const unread = convs.totalUnread();
  document.title = unread ? `(${unread}) ${pageTitle}` : pageTitle;
  $("me").textContent = app.me ? (app.account ? `${app.me} ✓` : app.me) : "";
  $("account-box").hidden = !app.account;
  $("account-name").textContent = app.account || "";
}

function renderHeader() {
  const conv = convs.current;
  $("conv-name").textContent = conv ? conv.name : "chathub";
  $("conv-topic").textContent = conv ? (conv.kind === "room" ? stripFormatting(conv.topic || "") : "Private conversation") : "Join a room to start chatting";
  $("conv-topic").title = conv && conv.topic ? conv.topic : "";
  $("member-count").textContent = conv && conv.kind === "room" ? String(conv.members.size) : "";
  $("empty-hint").hidden = Boolean(conv);
}

function renderMembers() {
  const list = $("member-list");
  clear(list);
  const conv = convs.current;
  if (!conv) return;
  // a private conversation lists its two parties, as known from the rooms shared with them
  const members = conv.kind === "room" ? conv.sortedMembers() : [app.me, conv.name].map(knownMember);
  for (const m of members) {
    const presence = m.presence === "away" ? `away${m.away ? `: ${m.away}` : ""}` : m.presence || "online";
    const item = el("li", {
      class: m.presence === "away" ? "away" : m.presence === "online" ? "online" : "unknown",
      title: `${m.nick} — ${presence} — via ${m.protocol}${m.account ? ` — account ${m.account}` : ""}`,
      on: { click: () => { if (!isMe(m.nick)) openPrivate(m.nick); } },
    },
    el("span", { class: "dot", "aria-label": presence }),
    el("span", { class: "role" }, m.op ? "@" : m.voice ? "+" : ""),
    el("span", { class: "nick" }, m.nick),
    el("span", { class: "proto" }, m.protocol || "?"));
    list.append(item);
  }
  $("member-count").textContent = String(members.length);
}

function knownMember(nick) {
  for (const room of convs.rooms()) {
    const member = room.members.get(fold(nick));
    if (member) return member;
  }
  return { nick, presence: "no shared room", protocol: "" };
}

function renderTyping() {
  const conv = convs.current;
  const names = conv ? [...conv.typing.values()].map((t) => t.nick) : [];
  $("typing").textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…`
    : names.length < 4 ? `${names.join(", ")} are typing…` : "Several people are typing…";
}

function renderAll() {
  renderSidebar();
  renderHeader();
  renderMembers();
  renderMessages();
  renderTyping();
}

// -- conversations ----------------------------------------------------------------------------

function activate(name) {
  const conv = convs.get(name);
  if (!conv) return;
  convs.active = conv.key;
  conv.unread = 0;
  conv.mentions = 0;
  closeDrawers();
  renderAll();
  if (conv.kind === "private" && !conv.historyAsked) requestHistory(conv, "latest");
  if (window.matchMedia("(min-width: 761px)").matches) $("input").focus();
}

function openPrivate(nick) {
  const conv = convs.ensure(nick);
  activate(conv.name);
}

function privateConversationOf(obj) {
  // a private message's conversation is named after the other person
  const other = isMe(obj.from.nick) ? obj.target : obj.from.nick;
  return convs.ensure(other);
}

function conversationOf(obj) {
  if (obj.from && obj.from.protocol === "server") return convs.current; // server notices
  if (isRoom(obj.target)) return convs.get(obj.target);
  return privateConversationOf(obj);
}

function requestHistory(conv, direction) {
  if (!app.hello || !app.hello.features.history) return;
  conv.historyAsked = true;
  const req = { type: "history", target: conv.name, limit: HISTORY_PAGE };
  if (direction === "before" && conv.oldestId) req.before = conv.oldestId;
  if (direction === "after" && conv.newestId) req.after = conv.newestId;
  send(req, { kind: "history", direction, key: conv.key });
}

// -- events from the server ------------------------------------------------------------------

const handlers = {
  hello(obj) {
    app.hello = obj;
    $("login-server").textContent = `${obj.network} · ${obj.server}`;
    $("tab-register").hidden = !obj.features.register;
    $("tab-guest").hidden = !obj.features.guests;
    if (!obj.features.guests && app.loginMode === "guest") setLoginMode("account");
    $("login-button").disabled = false;
    const token = storage.get(SAVED_TOKEN, null);
    if (!app.creds && !app.leftOnPurpose && token && token.nick && token.token) {
      app.creds = { nick: token.nick, token: token.token, mode: "token", retries: 0 };
    }
    if (app.creds) login(app.creds);
  },

  // the answer to our logout, or (with a reason) our session ended from another device
  logged_out(obj) {
    storage.set(SAVED_TOKEN, null);
    app.creds = null;
    app.loggedIn = false;
    app.account = null;
    app.leftOnPurpose = true;
    conn.close("Logged out");
    if (obj.reason) setLoginMode("account");
    showLoginError(obj.reason ? `${obj.reason}.` : "You are logged out.");
  },

  // the account's private conversations, from history: listed, their lines asked for when opened
  conversations(obj) {
    app.refs.delete(obj.ref);
    for (const item of obj.conversations) {
      if (item && typeof item.target === "string" && item.target && !isRoom(item.target)) convs.ensure(item.target);
    }
    renderSidebar();
  },

  welcome(obj) {
    app.me = obj.nick;
    app.account = obj.account;
    app.loggedIn = true;
    app.leftOnPurpose = false;
    storage.set(SAVED_NICK, obj.nick);
    if (obj.token) {
      storage.set(SAVED_TOKEN, { nick: obj.nick, token: obj.token });
      // a reconnect logs in with the token: the password is not kept
      app.creds = { ...app.creds, nick: obj.nick, token: obj.token, mode: "token", retries: 0 };
    }
    $("login-view").hidden = true;
    $("chat-view").hidden = false;
    $("connection-state").textContent = `Connected as ${obj.nick}`;
    hideBanner();
    if (app.creds && app.creds.wanted && app.creds.wanted !== obj.nick) {
      // never silently someone else: say why the nick is not the one asked for
      const where = app.creds.takenBy === "nick_on_other_server"
        ? " by your session on another server of this network" : "";
      showBanner(`${app.creds.wanted} is in use${where}, so you are ${obj.nick} (/nick to change)`, 8000);
      app.creds = { ...app.creds, wanted: undefined, takenBy: undefined };
    }
    if (app.creds && app.creds.mode === "register") {
      send({ type: "register", password: app.creds.password }, { kind: "register" });
    }
    let rooms = app.reconnecting
      ? convs.rooms().filter((c) => c.joined).map((c) => c.name)
      : storage.get(SAVED_ROOMS, []);
    if (!rooms.length && !app.reconnecting) {
      // the server's default rooms ([websocket] default_rooms); without any, the empty pane
      // shows a hint (#empty-hint) instead of nothing
      rooms = (app.hello && app.hello.default_rooms) || [];
      if (rooms.length) app.openAfterJoin = rooms[0];
    }
    for (const room of rooms) {
      const conv = convs.get(room);
      if (conv) conv.joined = false;
      send({ type: "join", room });
    }
    if (app.reconnecting) {
      for (const conv of convs.privates()) if (conv.newestId) requestHistory(conv, "after");
    }
    // an account's private conversations follow it to this browser (another device's too)
    if (obj.account && app.hello && app.hello.features.history) send({ type: "conversations" }, { kind: "conversations" });
    app.reconnecting = false;
    renderAll();
  },

  error(obj) {
    if (!app.loggedIn) {
      const retry = app.creds && app.creds.mode !== "register";
      const taken = obj.code === "nick_in_use" || obj.code === "nick_on_other_server";
      if (retry && obj.request === "login" && taken && app.creds.retries < 3) {
        // after a restart our old self may still hold the nick for a moment; an account's nick
        // may be held by its other device where the server's [auth] multiclient is off (on, this
        // login joins that device's user instead), or, in a cluster, by its session on another
        // server of the network, which this connection cannot join: the same account, under
        // another nick (its rooms, private talk and read markers are the account's)
        app.creds = {
          ...app.creds, nick: `${app.creds.nick}_`, retries: app.creds.retries + 1,
          wanted: app.creds.wanted || app.creds.nick, takenBy: obj.code,
          account: app.creds.mode === "account" ? app.creds.account || app.creds.nick : undefined,
        };
        login(app.creds);
        return;
      }
      if (app.creds && app.creds.mode === "token" && obj.code === "login_failed") {
        // expired or revoked: forget it and ask for the password
        storage.set(SAVED_TOKEN, null);
        app.creds = null;
        setLoginMode("account");
        showLoginError("Your session has ended — log in again.");
        return;
      }
      showLoginError(obj.message || obj.code);
      app.creds = null;
      return;
    }
    const purpose = obj.ref !== undefined ? app.refs.get(obj.ref) : null;
    if (purpose) app.refs.delete(obj.ref);
    if (purpose && purpose.kind === "history") return;
    if (purpose && purpose.kind === "register" && app.creds) app.creds = { ...app.creds, mode: "guest" };
    const conv = (obj.target && convs.get(obj.target)) || convs.current;
    const text = obj.target ? `${obj.target}: ${obj.message}` : obj.message;
    if (conv) systemLine(conv, text, null, "error");
    else showBanner(text, 6000);
  },

  join(obj) {
    const conv = convs.ensure(obj.room);
    if (isMe(obj.from.nick)) {
      conv.joined = true;
      conv.members.clear();
      systemLine(conv, `You joined ${obj.room}`, obj);
      saveRooms();
      if (!convs.current || (app.openAfterJoin && fold(app.openAfterJoin) === conv.key)) {
        app.openAfterJoin = null;
        activate(conv.name);
      }
    } else {
      conv.setMember({ nick: obj.from.nick, account: obj.from.account, protocol: obj.from.protocol, presence: "online", away: null, op: false, voice: false });
      systemLine(conv, `${obj.from.nick} joined`, obj);
      if (convs.current === conv) renderMembers();
    }
    renderSidebar();
  },

  room(obj) {
    const conv = convs.ensure(obj.room);
    conv.topic = obj.topic || "";
    conv.members.clear();
    for (const m of obj.members) conv.setMember({ ...m });
    if (!conv.historyAsked) requestHistory(conv, conv.newestId ? "after" : "latest");
    else if (conv.newestId) requestHistory(conv, "after");
    if (app.openAfterJoin && fold(app.openAfterJoin) === conv.key) {
      app.openAfterJoin = null;
      activate(conv.name);
    }
    if (convs.current === conv) {
      renderHeader();
      renderMembers();
    }
  },

  part(obj) {
    const conv = convs.get(obj.room);
    if (!conv) return;
    if (isMe(obj.from.nick)) {
      convs.remove(obj.room);
      saveRooms();
      const next = convs.rooms()[0] || convs.privates()[0];
      if (next) activate(next.name);
      else renderAll();
      return;
    }
    conv.removeMember(obj.from.nick);
    systemLine(conv, `${obj.from.nick} left${obj.reason ? ` (${obj.reason})` : ""}`, obj);
    if (convs.current === conv) renderMembers();
  },

  kick(obj) {
    const conv = convs.get(obj.room);
    if (!conv) return;
    const text = `${obj.nick} was kicked by ${obj.from.nick}${obj.reason ? ` (${obj.reason})` : ""}`;
    if (isMe(obj.nick)) {
      conv.joined = false;
      conv.members.clear();
      systemLine(conv, text, obj, "error");
      saveRooms();
    } else {
      conv.removeMember(obj.nick);
      systemLine(conv, text, obj);
    }
    if (convs.current === conv) renderMembers();
    renderSidebar();
  },

  quit(obj) {
    for (const conv of convs.map.values()) {
      if (conv.kind === "room" ? conv.removeMember(obj.from.nick) : conv.key === fold(obj.from.nick)) {
        systemLine(conv, `${obj.from.nick} quit${obj.reason ? ` (${obj.reason})` : ""}`, obj);
      }
    }
    renderMembers();
  },

  nick(obj) {
    const oldNick = obj.from.nick;
    if (isMe(oldNick)) {
      app.me = obj.nick;
      if (app.creds) app.creds = { ...app.creds, nick: obj.nick };
      storage.set(SAVED_NICK, obj.nick);
      $("connection-state").textContent = `Connected as ${obj.nick}`;
    }
    for (const conv of convs.map.values()) {
      if (conv.kind === "room" && conv.renameMember(oldNick, obj.nick)) {
        systemLine(conv, `${oldNick} is now known as ${obj.nick}`, obj);
      }
    }
    const talk = convs.get(oldNick);
    if (talk && talk.kind === "private") {
      convs.rename(oldNick, obj.nick);
      systemLine(talk, `${oldNick} is now known as ${obj.nick}`, obj);
    }
    renderAll();
  },

  away(obj) {
    for (const conv of convs.rooms()) {
      const member = conv.members.get(fold(obj.from.nick));
      if (member) {
        member.presence = obj.presence;
        member.away = obj.text || null;
      }
    }
    const talk = convs.get(obj.from.nick);
    if (talk && talk.kind === "private") {
      systemLine(talk, obj.presence === "away" ? `${obj.from.nick} is away: ${obj.text}` : `${obj.from.nick} is back`, obj);
    }
    if (isMe(obj.from.nick)) {
      const conv = convs.current;
      if (conv) systemLine(conv, obj.presence === "away" ? `You are away (${obj.text})` : "You are back", obj);
    }
    renderMembers();
  },

  rename(obj) {
    // the room keeps its lines, members and topic under its new name (and stays current)
    const conv = convs.rename(obj.room, obj.new);
    if (!conv) return;
    systemLine(conv, `${obj.from.nick} renamed ${obj.room} to ${obj.new}${obj.reason ? ` (${obj.reason})` : ""}`, obj);
    saveRooms();
    renderAll();
  },

  topic(obj) {
    const conv = convs.get(obj.room);
    if (!conv) return;
    conv.topic = obj.text;
    systemLine(conv, obj.text ? `${obj.from.nick} set the topic: ${obj.text}` : `${obj.from.nick} cleared the topic`, obj);
    if (convs.current === conv) renderHeader();
  },

  mode(obj) {
    const conv = convs.get(obj.room);
    if (!conv) return;
    for (const [change, arg] of obj.changes) {
      const member = arg ? conv.members.get(fold(arg)) : null;
      if (member && (change[1] === "o" || change[1] === "v")) {
        member[change[1] === "o" ? "op" : "voice"] = change[0] === "+";
      }
    }
    const text = obj.changes.map(([c, a]) => (a ? `${c} ${a}` : c)).join(" ");
    systemLine(conv, `${obj.from.nick} sets mode ${text}`, obj);
    if (convs.current === conv) renderMembers();
  },

  invite(obj) {
    const conv = convs.current;
    if (conv) systemLine(conv, `${obj.from.nick} invites ${obj.nick} to ${obj.room} — /join ${obj.room}`, obj);
  },

  account(obj) {
    if (isMe(obj.from.nick)) {
      app.account = obj.account;
      renderSidebar();
    }
  },

  redact(obj) {
    // the message it names, wherever this client holds it, is shown as "message deleted"
    const conv = conversationOf(obj);
    const line = conv && conv.lines.find((l) => l.id === obj.msgid);
    if (!line) return;
    line.deleted = deletedNote(obj.from.nick, obj.reason);
    line.text = "";
    line.mention = false;
    if (convs.current === conv) {
      frame.full = true;
      requestFrame();
    }
  },

  message(obj) { chat(obj); },
  action(obj) { chat(obj); },
  notice(obj) { chat(obj); },

  typing(obj) {
    if (isMe(obj.from.nick)) return;
    const conv = isRoom(obj.target) ? convs.get(obj.target) : convs.get(obj.from.nick);
    if (!conv) return;
    stopTyping(conv, obj.from.nick);
    if (obj.state === "active") {
      const timer = setTimeout(() => { stopTyping(conv, obj.from.nick); renderTyping(); }, TYPING_SHOW_FOR);
      conv.typing.set(fold(obj.from.nick), { nick: obj.from.nick, timer });
    }
    if (convs.current === conv) renderTyping();
  },

  history(obj) {
    const purpose = app.refs.get(obj.ref);
    app.refs.delete(obj.ref);
    const conv = convs.get(obj.target);
    if (!conv) return;
    if (!purpose || purpose.direction !== "after") conv.more = obj.more;
    const active = convs.current === conv;
    for (const event of obj.events) {
      if (event.type === "message" || event.type === "action" || event.type === "notice") {
        conv.add(lineFromEvent(event));
      }
    }
    if (purpose && purpose.direction === "after" && obj.more) requestHistory(conv, "after"); // keep catching up
    if (active) {
      if (purpose && purpose.direction === "before") conv.window = Math.min((conv.window || DOM_LINES) + obj.events.length, conv.lines.length);
      frame.full = true;
      frame.keepTop = Boolean(purpose && purpose.direction === "before");
      frame.keepBottom = !frame.keepTop;
      requestFrame();
    }
  },

  rooms(obj) {
    const list = $("rooms-browse");
    clear(list);
    if (!obj.rooms.length) list.append(el("li", { class: "muted" }, "No rooms yet — create one with the box on the left."));
    for (const room of obj.rooms) {
      list.append(el("li", {},
        el("div", { class: "info" }, el("strong", {}, room.room), el("p", { class: "muted" }, room.topic || "No topic")),
        el("span", { class: "muted" }, room.members === 1 ? "1 member" : `${room.members} members`),
        el("button", {
          type: "button", class: "primary",
          on: { click: () => { joinRoom(room.room); $("rooms-dialog").close(); } },
        }, room.joined ? "Open" : "Join")));
    }
    if (!$("rooms-dialog").open) $("rooms-dialog").showModal();
  },

  // our password changed: every other session is logged out, this one holds a new token
  password_changed(obj) {
    app.refs.delete(obj.ref);
    if (obj.token) {
      storage.set(SAVED_TOKEN, { nick: app.me, token: obj.token });
      app.creds = { nick: app.me, token: obj.token, mode: "token", retries: 0 };
    }
    const others = obj.revoked > 1 ? " Your other sessions were logged out." : "";
    const text = `Password changed.${others}`;
    if (convs.current) systemLine(convs.current, text, null);
    else showBanner(text, 5000);
  },

  registered(obj) {
    if (app.creds) app.creds = { ...app.creds, nick: obj.account, mode: "account" };
    if (obj.token) {
      storage.set(SAVED_TOKEN, { nick: app.me, token: obj.token });
      app.creds = { nick: app.me, token: obj.token, mode: "token", retries: 0 };
    }
    app.account = obj.account;
    renderSidebar();
    const conv = convs.current;
    const text = `Account ${obj.account} registered: log in with it next time.`;
    if (conv) systemLine(conv, text, null);
    else showBanner(text, 5000);
  },

  closing(obj) {
    showBanner(`Disconnected by the server: ${obj.reason}`);
  },
};

function chat(obj) {
  const conv = conversationOf(obj);
  if (!conv) return;
  // the typing line and the sidebar are drawn with the next frame: a busy room costs one
  // redraw of each per frame, not one per message
  if (stopTyping(conv, obj.from.nick) && convs.current === conv) frame.typing = true;
  addLine(conv, lineFromEvent(obj));
  if (conv.kind === "private" && convs.current === null) activate(conv.name);
  frame.sidebar = true;
  requestFrame();
}

/** Forget that ``nick`` is typing in ``conv``; true when it was. */
function stopTyping(conv, nick) {
  const entry = conv.typing.get(fold(nick));
  if (!entry) return false;
  clearTimeout(entry.timer);
  conv.typing.delete(fold(nick));
  return true;
}

// -- connection life ----------------------------------------------------------------------------

conn.onmessage = (obj) => {
  const handler = handlers[obj.type];
  if (handler) handler(obj);
};

conn.onopen = () => {
  $("connection-state").textContent = "Connected";
};

conn.onclose = ({ code, reason, retryIn }) => {
  const wasLoggedIn = app.loggedIn;
  app.loggedIn = false;
  $("login-button").disabled = true;
  if (retryIn === null) {
    // we left (quit, logout): a new connection, for the login form to log in with again
    conn.connect();
    return;
  }
  if (wasLoggedIn || app.reconnecting) {
    app.reconnecting = true;
    for (const conv of convs.rooms()) conv.typing.clear();
  }
  const seconds = Math.max(1, Math.round(retryIn / 1000));
  const why = code === 1009 ? "message too big" : reason || "connection lost";
  showBanner(`Disconnected (${why}) — reconnecting in ${seconds}s… `);
  $("banner").append(el("button", { id: "retry-now", class: "banner-button", type: "button", on: { click: () => conn.retryNow() } }, "Retry now"));
  $("connection-state").textContent = "Reconnecting…";
  $("login-server").textContent = `Server unreachable — retrying in ${seconds}s…`;
};

function login(creds) {
  const req = { type: "login", nick: creds.nick };
  if (creds.mode === "account") req.password = creds.password;
  if (creds.mode === "account" && creds.account) req.account = creds.account;
  if (creds.mode === "token") req.token = creds.token;
  send(req, { kind: "login" });
}

// -- login screen ------------------------------------------------------------------------------

function setLoginMode(mode) {
  app.loginMode = mode;
  for (const [id, m] of [["tab-guest", "guest"], ["tab-account", "account"], ["tab-register", "register"]]) {
    $(id).setAttribute("aria-selected", String(m === mode));
  }
  $("password-field").hidden = mode === "guest";
  $("login-password").required = mode !== "guest";
  $("login-password").autocomplete = mode === "register" ? "new-password" : "current-password";
  $("login-button").textContent = mode === "register" ? "Create account" : "Join chat";
  $("login-hint").textContent = {
    guest: "Guests chat under any free nick. Registered nicks need their password.",
    account: "Log in with your account name and password.",
    register: `Pick a nick and a password of at least ${minPassword()} characters: the nick becomes your account.`,
  }[mode];
}

function minPassword() {
  return (app.hello && app.hello.limits && app.hello.limits.password_min_length) || 4;
}

function showLoginError(text) {
  $("login-error").textContent = text;
  $("login-error").hidden = false;
  $("login-view").hidden = false;
  $("chat-view").hidden = true;
}

$("empty-browse").addEventListener("click", () => send({ type: "rooms" }));
$("tab-guest").addEventListener("click", () => setLoginMode("guest"));
$("tab-account").addEventListener("click", () => setLoginMode("account"));
$("tab-register").addEventListener("click", () => setLoginMode("register"));

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("login-error").hidden = true;
  const nick = $("login-nick").value.trim();
  const password = $("login-password").value;
  if (!nick) return;
  if (app.loginMode === "register" && password.length < minPassword()) {
    // refused here, before anything is sent: never a guest login with a banner instead
    showLoginError(`Password too short: at least ${minPassword()} characters.`);
    $("login-password").focus();
    return;
  }
  // registering: log in as a guest under the nick, then register it (see "register" in docs/protocol.md)
  app.creds = { nick, password, mode: app.loginMode, retries: 0 };
  login(app.creds);
});

// -- chat input ------------------------------------------------------------------------------

function joinRoom(name, key) {
  let room = name.trim();
  if (!room) return;
  if (!room.startsWith("#")) room = `#${room}`;
  const existing = convs.get(room);
  if (existing && existing.joined) {
    activate(existing.name);
    return;
  }
  app.openAfterJoin = room;
  const req = { type: "join", room };
  if (key) req.key = key;
  send(req, { kind: "join" });
}

function submitInput() {
  const input = $("input");
  const text = input.value;
  const conv = convs.current;
  const parsed = parseInput(text, conv ? conv.name : null);
  const complain = (text) => (conv ? systemLine(conv, text, null, "error") : showBanner(text, 5000));
  if (!conn.open && parsed.requests.length) {
    complain("Not connected — nothing was sent; try again once reconnected.");
    return;
  }
  if (parsed.error) {
    complain(parsed.error);
    return;
  }
  // the server refuses a longer text too (message_too_long); saying so here keeps the
  // input, and a text past the WebSocket's message size would close the connection
  const limits = app.hello && app.hello.limits;
  const tooLong = limits && limits.text_bytes && parsed.requests.find((req) => typeof req.text === "string"
    && (req.type === "message" || req.type === "action") && new TextEncoder().encode(req.text).length > limits.text_bytes);
  if (tooLong) {
    complain(`Message too long (at most ${limits.text_bytes} bytes); nothing was sent.`);
    return;
  }
  input.value = "";
  autosize();
  sendTyping("done");
  if (parsed.local === "help") {
    if (conv) for (const line of HELP) systemLine(conv, line, null);
    else showBanner("Type /join #room to join or create a room; /help there lists every command.", 8000);
  }
  if (parsed.local === "rooms") send({ type: "rooms" });
  if (parsed.local === "delete" && conv) {
    const own = conv.lines.findLast((l) => l.id && !l.deleted && isMe(l.nick)
      && (l.kind === "message" || l.kind === "action" || l.kind === "notice"));
    if (!own) complain("No message of yours here to delete.");
    else send({ type: "redact", target: conv.name, msgid: own.id, reason: parsed.reason || "" });
  }
  if (parsed.local === "topic" && conv) systemLine(conv, conv.topic ? `Topic: ${conv.topic}` : `${conv.name} has no topic`, null);
  for (const req of parsed.requests) {
    if (req.type === "join") {
      joinRoom(req.room, req.key);
      continue;
    }
    // kept in memory, as the Register tab does, to log in to the account after a reconnect
    if (req.type === "register" && app.creds) app.creds = { ...app.creds, password: req.password };
    send(req, req.type === "message" || req.type === "action" ? null : { kind: req.type });
  }
  if (parsed.open && !isRoom(parsed.open)) openPrivate(parsed.open);
  if (parsed.local === "logout") {
    // sent above (the parsed request): the server answers logged_out and closes
    storage.set(SAVED_TOKEN, null);
    app.creds = null;
    return;
  }
  if (parsed.local === "quit") {
    conn.leave(); // closing here could overtake the quit request and lose its reason
    app.creds = null;
    app.leftOnPurpose = true;
    app.loggedIn = false;
    showLoginError("You left. Log in again to come back.");
    $("login-error").hidden = true;
  }
}

function sendTyping(state) {
  const conv = convs.current;
  const now = Date.now();
  if (state === "active") {
    if (!conv || (conv.kind === "room" && !conv.joined)) return;
    if (app.typingTarget === conv.name && now - app.lastTypingSent < TYPING_SEND_EVERY) return;
    app.typingTarget = conv.name;
    app.lastTypingSent = now;
    send({ type: "typing", target: conv.name, state: "active" });
  } else if (app.typingTarget) {
    send({ type: "typing", target: app.typingTarget, state: "done" });
    app.typingTarget = null;
    app.lastTypingSent = 0;
  }
}

function autosize() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

$("input-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitInput();
});

$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submitInput();
  }
});

$("input").addEventListener("input", () => {
  autosize();
  const value = $("input").value;
  if (value && !value.startsWith("/")) sendTyping("active");
  else if (!value) sendTyping("done");
});

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  joinRoom($("join-input").value);
  $("join-input").value = "";
});

$("browse-rooms").addEventListener("click", () => send({ type: "rooms" }));

// the server revokes the token(s), answers logged_out and closes: nothing to resume
function logout(everywhere) {
  if (!conn.open) {
    showBanner("Not connected — try again once reconnected.", 5000);
    return;
  }
  send({ type: "logout", everywhere }, { kind: "logout" });
  storage.set(SAVED_TOKEN, null);
  app.creds = null;
}
$("logout").addEventListener("click", () => logout(false));
$("logout-everywhere").addEventListener("click", () => logout(true));
$("close-rooms").addEventListener("click", () => $("rooms-dialog").close());
$("load-older").addEventListener("click", () => {
  const conv = convs.current;
  if (!conv) return;
  const width = conv.window || DOM_LINES;
  if (conv.lines.length > width) {
    // older lines still held: shown first, the server is asked only past them
    conv.window = Math.min(width + HISTORY_PAGE, conv.lines.length);
    renderMessages({ keepTop: true });
  } else {
    requestHistory(conv, "before");
  }
});
$("new-messages").addEventListener("click", () => {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
  showUnseen(0);
});
$("messages").addEventListener("scroll", () => {
  if (drawn.unseen && isAtBottom($("messages"))) showUnseen(0);
}, { passive: true });

// -- drawers (phones) and the members panel ------------------------------------------------------

const view = $("chat-view");
function closeDrawers() {
  view.classList.remove("show-sidebar", "show-members");
  $("scrim").hidden = true;
}
$("toggle-sidebar").addEventListener("click", () => {
  view.classList.add("show-sidebar");
  $("scrim").hidden = false;
});
$("toggle-members").addEventListener("click", () => {
  if (window.matchMedia("(max-width: 760px)").matches) {
    view.classList.add("show-members");
    $("scrim").hidden = false;
  } else {
    view.classList.toggle("members-hidden");
  }
});
$("close-members").addEventListener("click", closeDrawers);
$("scrim").addEventListener("click", closeDrawers);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeDrawers();
});

document.addEventListener("visibilitychange", () => {
  const conv = convs.current;
  if (!document.hidden && conv && conv.unread) {
    conv.unread = 0;
    conv.mentions = 0;
    renderSidebar();
  }
});
window.addEventListener("online", () => conn.retryNow());

// -- banner ---------------------------------------------------------------------------------

let bannerTimer = null;
function showBanner(text, hideAfter = 0) {
  const banner = $("banner");
  banner.textContent = text;
  banner.hidden = false;
  clearTimeout(bannerTimer);
  if (hideAfter) bannerTimer = setTimeout(hideBanner, hideAfter);
}
function hideBanner() {
  $("banner").hidden = true;
}

// -- start ------------------------------------------------------------------------------------

$("login-nick").value = storage.get(SAVED_NICK, "");
setLoginMode("guest");
renderAll();
conn.connect();
