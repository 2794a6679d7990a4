// Conversations (rooms and private talks), their lines, members and unread counts. No DOM here.

/** The hub's casemapping (ASCII): Alice, ALICE and alice are one nick. */
export const fold = (name) => name.replace(/[A-Z]/g, (c) => c.toLowerCase());
export const isRoom = (name) => typeof name === "string" && name.startsWith("#");

const MAX_LINES = 1500;
const CHAT_KINDS = new Set(["message", "action", "notice"]);
const isChat = (line) => CHAT_KINDS.has(line.kind);

export class Conversation {
  constructor(name) {
    this.name = name; // display name: "#room" or the other person's nick
    this.key = fold(name);
    this.kind = isRoom(name) ? "room" : "private";
    this.lines = []; // oldest first
    this.ids = new Set();
    this.unread = 0;
    this.mentions = 0;
    this.members = new Map(); // folded nick -> member
    this.topic = "";
    this.joined = false;
    this.more = false; // older history exists on the server
    this.historyAsked = false;
    this.typing = new Map(); // folded nick -> {nick, timer}
  }

  // History pages are anchored on chat lines only: a join or topic line has an id too,
  // but "after my own join" is not where catching up should start.
  get newestId() {
    for (let i = this.lines.length - 1; i >= 0; i--) if (this.lines[i].id && isChat(this.lines[i])) return this.lines[i].id;
    return null;
  }

  get oldestId() {
    for (const line of this.lines) if (line.id && isChat(line)) return line.id;
    return null;
  }

  /** Add a line in id order; returns the index, or -1 when it was already there. */
  add(line) {
    if (line.id) {
      if (this.ids.has(line.id)) return -1;
      this.ids.add(line.id);
    }
    let index = this.lines.length;
    // server ids sort by time; local lines (no id) go at the end
    if (line.id) {
      while (index > 0 && this.lines[index - 1].id && this.lines[index - 1].id > line.id) index--;
    }
    this.lines.splice(index, 0, line);
    if (this.lines.length > MAX_LINES) {
      const dropped = this.lines.splice(0, this.lines.length - MAX_LINES);
      for (const old of dropped) if (old.id) this.ids.delete(old.id);
      this.more = true;
      return Math.max(0, index - dropped.length);
    }
    return index;
  }

  setMember(member) {
    this.members.set(fold(member.nick), member);
  }

  removeMember(nick) {
    return this.members.delete(fold(nick));
  }

  hasMember(nick) {
    return this.members.has(fold(nick));
  }

  renameMember(oldNick, newNick) {
    const member = this.members.get(fold(oldNick));
    if (!member) return false;
    this.members.delete(fold(oldNick));
    member.nick = newNick;
    this.members.set(fold(newNick), member);
    return true;
  }

  sortedMembers() {
    const rank = (m) => (m.op ? 0 : m.voice ? 1 : 2);
    return [...this.members.values()].sort(
      (a, b) => rank(a) - rank(b) || fold(a.nick).localeCompare(fold(b.nick)),
    );
  }
}

export class Conversations {
  constructor() {
    this.map = new Map();
    this.active = null; // key
  }

  get(name) {
    return this.map.get(fold(name)) || null;
  }

  ensure(name) {
    let conv = this.get(name);
    if (!conv) {
      conv = new Conversation(name);
      this.map.set(conv.key, conv);
    }
    return conv;
  }

  remove(name) {
    this.map.delete(fold(name));
    if (this.active === fold(name)) this.active = null;
  }

  rename(oldName, newName) {
    const conv = this.get(oldName);
    const taken = this.get(newName);
    if (!conv || (taken && taken !== conv)) return conv;
    this.map.delete(conv.key);
    const wasActive = this.active === conv.key;
    conv.name = newName;
    conv.key = fold(newName);
    this.map.set(conv.key, conv);
    if (wasActive) this.active = conv.key;
    return conv;
  }

  get current() {
    return this.active ? this.map.get(this.active) || null : null;
  }

  rooms() {
    return [...this.map.values()].filter((c) => c.kind === "room").sort((a, b) => a.key.localeCompare(b.key));
  }

  privates() {
    return [...this.map.values()].filter((c) => c.kind === "private").sort((a, b) => a.key.localeCompare(b.key));
  }

  totalUnread() {
    let n = 0;
    for (const conv of this.map.values()) n += conv.unread;
    return n;
  }
}
