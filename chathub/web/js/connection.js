// The WebSocket to /ws speaking chathub.v1, reconnecting with exponential backoff.

export const SUBPROTOCOL = "chathub.v1";

/** ws(s)://<this page's host>/ws */
export function defaultUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/**
 * Keeps one chathub.v1 connection open. Handlers:
 *   onmessage(obj), onopen(), onclose({code, reason, retryIn}), onstate(text)
 * After an unexpected close it reconnects after 1 s, 2 s, 4 s ... up to maxDelay, with jitter;
 * a connection that stayed open a while resets the delay.
 */
export class Connection {
  constructor(url = defaultUrl(), { baseDelay = 1000, maxDelay = 30000 } = {}) {
    this.url = url;
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.attempt = 0;
    this.ws = null;
    this.stopped = false;
    this.timer = null;
    this.openedAt = 0;
    this.onmessage = () => {};
    this.onopen = () => {};
    this.onclose = () => {};
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.stopped = false;
    clearTimeout(this.timer);
    this.timer = null;
    let ws;
    try {
      ws = new WebSocket(this.url, [SUBPROTOCOL]);
    } catch (err) {
      this.scheduleRetry(1006, String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.openedAt = Date.now();
      this.onopen();
    };
    ws.onmessage = (event) => {
      let obj;
      try {
        obj = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onmessage(obj);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // a connection that lasted a minute was healthy: start the backoff again
      if (this.openedAt && Date.now() - this.openedAt > 60000) this.attempt = 0;
      this.openedAt = 0;
      if (this.stopped) {
        this.onclose({ code: event.code, reason: event.reason, retryIn: null });
        return;
      }
      this.scheduleRetry(event.code, event.reason);
    };
  }

  scheduleRetry(code, reason) {
    const exp = Math.min(this.maxDelay, this.baseDelay * 2 ** this.attempt);
    const delay = Math.round(exp * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.onclose({ code, reason, retryIn: delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect now (the user asked, or the page came back online). */
  retryNow() {
    if (this.ws === null && !this.stopped) this.connect();
  }

  send(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  /** No reconnect from now on; the server ends the connection (after a quit request, so the
   * quit and its reason reach the server before the close does). */
  leave() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Close for good (logout): no reconnect. */
  close(reason = "") {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, reason);
  }
}
