// mIRC formatting codes (bold, italic, underline, strikethrough, monospace, reverse, colour,
// hex colour, reset) as the hub stores them, parsed into styled runs: one pass over the text,
// no regex. The same model as chathub/formatting.py.

const TOGGLES = { "\x02": "bold", "\x1d": "italic", "\x1f": "underline", "\x1e": "strike", "\x11": "mono", "\x16": "reverse" };
const CODES = new Set([...Object.keys(TOGGLES), "\x03", "\x04", "\x0f"]);
// colours 16-98 of the extended palette; 0-15 are themed CSS classes (style.css)
const EXTENDED = (
  "470000 472100 474700 324700 004700 00472c 004747 002747 000047 2e0047 470047 47002a " +
  "740000 743a00 747400 517400 007400 007449 007474 004074 000074 4b0074 740074 740045 " +
  "b50000 b56300 b5b500 7db500 00b500 00b571 00b5b5 0063b5 0000b5 7500b5 b500b5 b5006b " +
  "ff0000 ff8c00 ffff00 b2ff00 00ff00 00ffa0 00ffff 008cff 0000ff a500ff ff00ff ff0098 " +
  "ff5959 ffb459 ffff71 cfff60 6fff6f 65ffc9 6dffff 59b4ff 5959ff c459ff ff66ff ff59bc " +
  "ff9c9c ffd39c ffff9c e2ff9c 9cff9c 9cffdb 9cffff 9cd3ff 9c9cff dc9cff ff9cff ff94d3 " +
  "000000 131313 282828 363636 4d4d4d 656565 818181 9f9f9f bcbcbc e2e2e2 ffffff"
).split(" ");
const PLAIN = { bold: false, italic: false, underline: false, strike: false, mono: false, reverse: false, fg: null, bg: null };

const isDigit = (c) => c >= "0" && c <= "9";

function digits(text, i) {
  let end = i;
  while (end < text.length && end - i < 2 && isDigit(text[end])) end += 1;
  return [end > i ? Number(text.slice(i, end)) : null, end];
}

function hex(text, i) {
  const chunk = text.slice(i, i + 6);
  return chunk.length === 6 && /^[0-9a-fA-F]{6}$/.test(chunk) ? "#" + chunk.toLowerCase() : null;
}

const palette = (n) => (n === 99 ? null : n);

/** ``text`` as [{text, style}] runs, the formatting codes removed. */
export function parseFormatting(text) {
  const runs = [];
  let style = PLAIN;
  let start = 0;
  let i = 0;
  const flush = (end) => {
    if (end > start) runs.push({ text: text.slice(start, end), style });
  };
  while (i < text.length) {
    const c = text[i];
    if (!CODES.has(c)) { i += 1; continue; }
    flush(i);
    i += 1;
    if (c in TOGGLES) {
      style = { ...style, [TOGGLES[c]]: !style[TOGGLES[c]] };
    } else if (c === "\x0f") {
      style = PLAIN;
    } else if (c === "\x03") {
      let fg;
      [fg, i] = digits(text, i);
      if (fg === null) style = { ...style, fg: null, bg: null };
      else {
        let bg = style.bg;
        if (text[i] === "," && isDigit(text[i + 1] || "")) [bg, i] = digits(text, i + 1), bg = palette(bg);
        style = { ...style, fg: palette(fg), bg };
      }
    } else {
      const fg = hex(text, i);
      if (fg === null) style = { ...style, fg: null, bg: null };
      else {
        i += 6;
        let bg = style.bg;
        const found = text[i] === "," ? hex(text, i + 1) : null;
        if (found) { bg = found; i += 7; }
        style = { ...style, fg, bg };
      }
    }
    start = i;
  }
  flush(text.length);
  return runs;
}

/** ``text`` without its formatting codes. */
export function stripFormatting(text) {
  return parseFormatting(text).map((run) => run.text).join("");
}

// -- links: http(s) URLs in the text become links (opened in a new tab, without a referrer) --

// what ends a URL: white space and the characters that cannot be in one unescaped
const URL_END = new Set([" ", "\t", "\n", "\r", "<", ">", '"', "\u3000"]);
// trailing punctuation that belongs to the sentence, not the URL
const TRAILING = new Set([".", ",", ";", ":", "!", "?", "'", ")", "]", "}"]);

function urlEnd(text, start) {
  let end = start;
  while (end < text.length && !URL_END.has(text[end])) end += 1;
  while (end > start && TRAILING.has(text[end - 1])) {
    // a closing bracket the URL opened stays (https://en.wikipedia.org/wiki/Foo_(bar))
    const c = text[end - 1];
    const open = c === ")" ? "(" : c === "]" ? "[" : c === "}" ? "{" : null;
    if (open && text.slice(start, end - 1).includes(open)) break;
    end -= 1;
  }
  return end;
}

/** ``text`` as text nodes and <a> links, one pass, no regex over it. */
export function linkedNodes(text) {
  const nodes = [];
  const lower = text.toLowerCase();
  let from = 0;
  let at = 0;
  while (at < text.length) {
    const http = lower.indexOf("http", at);
    if (http < 0) break;
    const scheme = lower.startsWith("https://", http) ? 8 : lower.startsWith("http://", http) ? 7 : 0;
    // a URL starts a word: "xhttp://" is no link
    if (!scheme || (http > 0 && /[\p{L}\p{N}]/u.test(text[http - 1]))) {
      at = http + 4;
      continue;
    }
    const end = urlEnd(text, http);
    let href = null;
    if (end > http + scheme) {
      try {
        const url = new URL(text.slice(http, end));
        if (url.protocol === "http:" || url.protocol === "https:") href = url.href;
      } catch {
        href = null;
      }
    }
    if (href === null) {
      at = http + scheme;
      continue;
    }
    if (http > from) nodes.push(document.createTextNode(text.slice(from, http)));
    const link = document.createElement("a");
    link.href = href;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
    link.textContent = text.slice(http, end);
    nodes.push(link);
    from = at = end;
  }
  if (from < text.length) nodes.push(document.createTextNode(text.slice(from)));
  return nodes;
}

function colourOf(value) {
  if (value === null) return null;
  if (typeof value === "string") return { css: value };
  if (value < 16) return { cls: value };
  return { css: "#" + EXTENDED[value - 16] };
}

/**
 * DOM nodes showing ``text`` with its formatting: plain runs as text nodes, styled ones as
 * spans with classes (palette 0-15, themed in style.css) or CSSOM colours (16-98, hex);
 * http(s) URLs in either as links.
 */
export function formattedNodes(text) {
  const nodes = [];
  for (const { text: part, style } of parseFormatting(text)) {
    const classes = [];
    if (style.bold) classes.push("f-bold");
    if (style.italic) classes.push("f-italic");
    if (style.underline) classes.push("f-underline");
    if (style.strike) classes.push("f-strike");
    if (style.mono) classes.push("f-mono");
    let fg = colourOf(style.fg);
    let bg = colourOf(style.bg);
    if (style.reverse) {
      // reverse swaps the colours, the page's own ones when none is set
      [fg, bg] = [bg, fg];
      classes.push("f-reverse");
    }
    if (!classes.length && !fg && !bg) { nodes.push(...linkedNodes(part)); continue; }
    const span = document.createElement("span");
    if (fg && fg.cls !== undefined) classes.push(`f-fg${fg.cls}`);
    if (bg && bg.cls !== undefined) classes.push(`f-bg${bg.cls}`);
    if (bg) classes.push("f-has-bg");
    span.className = classes.join(" ");
    // through the CSSOM: the page's Content-Security-Policy forbids style attributes
    if (fg && fg.css) span.style.setProperty("color", fg.css);
    if (bg && bg.css) span.style.setProperty("background-color", bg.css);
    span.append(...linkedNodes(part));
    nodes.push(span);
  }
  return nodes;
}
