// What the user types: plain text is a message, /commands become chathub.v1 requests.

export const HELP = [
  "/join #room [key] — join or create a room",
  "/part [#room] [reason] — leave this room (or #room)",
  "/me action — say what you do",
  "/msg nick text — private message (opens a conversation)",
  "/query nick — open a private conversation",
  "/nick newnick — change your nick",
  "/topic [text] — show or set this room's topic",
  "/away [text] — mark yourself away; /away alone (or /back) to return",
  "/register password — register your nick as an account",
  "/password current new — change your account's password (every other session is logged out)",
  "/notice target text — send a notice",
  "/rooms — browse rooms",
  "/quit [reason] — leave chathub",
  "/logout [everywhere] — log out (this browser, or every session of the account) and forget the saved session",
];

/**
 * Parse one input line. `current` is the active conversation's target (a room or a nick)
 * or null. Returns {requests: [...], open: target|undefined, local: "help"|"rooms"|"quit"|undefined,
 * error: text|undefined}.
 */
export function parseInput(line, current) {
  const text = line.replace(/\s+$/, "");
  if (!text.trim()) return { requests: [] };
  if (!text.startsWith("/") || text.startsWith("//")) {
    const body = text.startsWith("//") ? text.slice(1) : text;
    if (!current) return { requests: [], error: "Join a room first: /join #room" };
    return { requests: [{ type: "message", target: current, text: body }] };
  }
  const match = /^\/(\S+)\s*([\s\S]*)$/.exec(text);
  const name = match[1].toLowerCase();
  const rest = match[2];
  const words = rest.split(/\s+/).filter(Boolean);
  const need = (what) => ({ requests: [], error: `Usage: ${what}` });
  switch (name) {
    case "me":
      if (!current) return { requests: [], error: "Join a room first: /join #room" };
      if (!rest) return need("/me action");
      return { requests: [{ type: "action", target: current, text: rest }] };
    case "join":
    case "j": {
      if (!words.length) return need("/join #room");
      let room = words[0];
      if (!room.startsWith("#")) room = "#" + room;
      const req = { type: "join", room };
      if (words[1]) req.key = words[1];
      return { requests: [req], open: room };
    }
    case "part":
    case "leave": {
      // as on telnet: /part [#room] [reason]
      if (words[0] && words[0].startsWith("#")) {
        return { requests: [{ type: "part", room: words[0], reason: rest.slice(words[0].length).trim() }] };
      }
      if (!current || !current.startsWith("#")) return { requests: [], error: "/part works in a room" };
      return { requests: [{ type: "part", room: current, reason: rest }] };
    }
    case "msg":
    case "query": {
      if (!words.length) return need(`/${name} nick text`);
      const target = words[0];
      const body = rest.slice(rest.indexOf(target) + target.length).replace(/^\s/, "");
      if (name === "query" || !body) return { requests: [], open: target };
      return { requests: [{ type: "message", target, text: body }], open: target };
    }
    case "notice": {
      if (words.length < 2) return need("/notice target text");
      const target = words[0];
      return { requests: [{ type: "notice", target, text: rest.slice(rest.indexOf(target) + target.length + 1) }] };
    }
    case "nick":
      if (words.length !== 1) return need("/nick newnick");
      return { requests: [{ type: "nick", nick: words[0] }] };
    case "topic":
      if (!current || !current.startsWith("#")) return { requests: [], error: "/topic works in a room" };
      if (!rest) return { requests: [], local: "topic" }; // as on telnet: shows it, never clears it
      return { requests: [{ type: "topic", room: current, text: rest }] };
    case "away":
      // as on telnet: /away alone means back
      return { requests: [rest ? { type: "away", text: rest } : { type: "away" }] };
    case "register":
      if (words.length !== 1) return need("/register password");
      return { requests: [{ type: "register", password: words[0] }] };
    case "password":
      if (words.length !== 2) return need("/password current new");
      return { requests: [{ type: "password", password: words[0], new_password: words[1] }] };
    case "back":
      return { requests: [{ type: "away" }] };
    case "rooms":
    case "list":
      return { requests: [], local: "rooms" };
    case "quit":
      return { requests: [{ type: "quit", reason: rest || "Leaving" }], local: "quit" };
    case "logout":
      return { requests: [{ type: "logout", everywhere: rest.trim() === "everywhere" }], local: "logout" };
    case "help":
      return { requests: [], local: "help" };
    default:
      return { requests: [], error: `Unknown command /${name} — try /help` };
  }
}
