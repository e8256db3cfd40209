// gopush.js: a dependency-free client for gopush-rs, for browsers and Node >= 18 (an ES module).
//
// It asks web which comet owns the key, subscribes over WebSocket with the last mid it saw (the
// comet then sends what was missed, then live messages, in mid order: docs/protocol.md#resume),
// sends heartbeats as the server expects, and reconnects with exponential back-off and jitter,
// asking web again each time since the key may have moved. Mids are kept as decimal strings:
// they are 17-digit numbers, past what a JavaScript number holds exactly.

/** Options and their defaults; see gopush.d.ts for what each means. */
export const DEFAULTS = Object.freeze({
  heartbeat: 30,
  mid: "0",
  backoffBase: 500,
  backoffMax: 30000,
  lookupTimeout: 10000,
});

const HEARTBEAT_REPLY = "+h\r\n";
const RESUME_FAILED = "+r\r\n";
// A frame's top-level mid, gid and (room messages in the new format) room close it: user JSON
// inside msg cannot match here.
const TRAILER = /,"mid":(\d+),"gid":(\d+)(?:,"room":("(?:[^"\\]|\\.)*"))?}$/;

/**
 * The pause before reconnect attempt `attempt` (0 first): a ceiling doubling from `base` up to
 * `max`, of which a random half to whole is taken, so clients cut off together do not return
 * together.
 */
export function backoff(attempt, base = DEFAULTS.backoffBase, max = DEFAULTS.backoffMax, random = Math.random) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** The web lookup URL of `key` for WebSocket clients (`p=1`). */
export function lookupUrl(web, key) {
  return `${web.replace(/\/+$/, "")}/1/server/get?k=${encodeURIComponent(key)}&p=1`;
}

/** The offline-message URL of `key` after `mid`. */
export function messagesUrl(web, key, mid) {
  return `${web.replace(/\/+$/, "")}/1/msg/get?k=${encodeURIComponent(key)}&m=${mid}`;
}

/**
 * The comet's subscribe URL: new message format (`ver=1`), resuming after `mid`, joining `rooms`
 * for this connection (the comet must allow it: `client_rooms`).
 */
export function subscribeUrl(server, key, { heartbeat = DEFAULTS.heartbeat, mid = "0", token = "", secure = false, rooms = [] } = {}) {
  const q = [`key=${encodeURIComponent(key)}`, `heartbeat=${heartbeat}`];
  if (token) q.push(`token=${encodeURIComponent(token)}`);
  q.push("ver=1", `mid=${mid}`);
  if (rooms.length) q.push(`room=${rooms.map(encodeURIComponent).join(",")}`);
  return `${secure ? "wss" : "ws"}://${server}/sub?${q.join("&")}`;
}

/** Compares two decimal mids exactly. */
export function newer(mid, than) {
  return BigInt(mid) > BigInt(than);
}

/** Remembers the last mid delivered and refuses any not newer (mids only grow per key). */
export class Dedupe {
  constructor(last = "0") {
    this.last = String(last);
  }
  /** True, and remembered, when `mid` is newer than every mid accepted before. */
  accept(mid) {
    if (!newer(mid, this.last)) return false;
    this.last = String(mid);
    return true;
  }
}

/**
 * What one comet text frame says: `{type: "heartbeat"}`, `{type: "resume-failed"}`,
 * `{type: "refused", code}` for `-p`/`-n`/`-a`/`-c`, or `{type: "message", mid, msg}`.
 */
export function parseFrame(text) {
  if (text === HEARTBEAT_REPLY) return { type: "heartbeat" };
  if (text === RESUME_FAILED) return { type: "resume-failed" };
  if (/^-[a-z]\r\n$/.test(text)) return { type: "refused", code: text[1] };
  return parseMessage(text);
}

/**
 * One `{"msg":..,"mid":..,"gid":..}` text as `{type: "message", mid, msg, gid}`, with `room` for a
 * room message in the new format; throws on junk. `gid` is 0 for a private message, 1 for a room
 * message and 2 for a broadcast.
 */
export function parseMessage(text) {
  const m = TRAILER.exec(text);
  if (!m) throw new Error(`not a gopush message: ${text.slice(0, 80)}`);
  const message = { type: "message", mid: m[1], msg: JSON.parse(text).msg, gid: Number(m[2]) };
  if (m[3] !== undefined) message.room = JSON.parse(m[3]);
  return message;
}

/** The messages of a `/1/msg/get` answer, in order, each parsed as by `parseMessage`. */
export function parseMessages(body) {
  const head = '{"data":{"msgs":[';
  if (!body.startsWith(head)) {
    const ret = JSON.parse(body).ret;
    if (ret !== 0) throw new Error(`msg/get failed: ret ${ret}`);
    return [];
  }
  const out = [];
  let depth = 0;
  let start = head.length;
  let inString = false;
  for (let i = head.length; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      if (depth === 0) {
        out.push(parseMessage(body.slice(start, i)));
        return out;
      }
      depth--;
    } else if (c === "," && depth === 0) {
      out.push(parseMessage(body.slice(start, i)));
      start = i + 1;
    }
  }
  throw new Error("msg/get answer ends early");
}

/**
 * A subscription that stays up: `new GoPush(web, key, options)`, then `on("message", fn)` and
 * `on("state", fn)`; `close()` ends it.
 */
export class GoPush {
  constructor(web, key, options = {}) {
    this.web = web;
    this.key = key;
    this.options = { ...DEFAULTS, ...options };
    this.dedupe = new Dedupe(this.options.mid);
    this.state = "idle";
    this.server = null;
    this.attempt = 0;
    this._handlers = { message: [], state: [], error: [] };
    this._closed = false;
    this._ws = null;
    this._wake = null;
    // Started after the constructor returns, so handlers added right after `new` see every state.
    queueMicrotask(() => this._run());
  }

  /** The last mid delivered (a decimal string): where a later client should resume. */
  get lastMid() {
    return this.dedupe.last;
  }

  /** Calls `fn` on each `event` ("message", "state", "error"); returns a function that stops it. */
  on(event, fn) {
    const list = this._handlers[event];
    if (!list) throw new Error(`unknown event ${event}`);
    list.push(fn);
    return () => list.splice(list.indexOf(fn) >>> 0, 1);
  }

  /** Ends the subscription for good. */
  close() {
    this._closed = true;
    if (this._ws) this._ws.close();
    if (this._wake) this._wake();
    this._setState("closed");
  }

  _emit(event, value) {
    for (const fn of [...this._handlers[event]]) {
      try {
        fn(value);
      } catch (e) {
        if (event !== "error") this._emit("error", e);
      }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, server: this.server, attempt: this.attempt, ...extra });
  }

  async _run() {
    while (!this._closed) {
      this._setState("connecting");
      try {
        this.server = await this._lookup();
        // close() may have come while web answered.
        if (this._closed) return;
        await this._subscribe(this.server);
      } catch (e) {
        this._emit("error", e);
      }
      if (this._closed) return;
      const delay = backoff(this.attempt++, this.options.backoffBase, this.options.backoffMax);
      this._setState("disconnected", { delay });
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delay);
        this._wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this._wake = null;
    }
  }

  async _fetchText(url) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.options.lookupTimeout);
    try {
      const resp = await fetch(url, { signal: abort.signal });
      if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
      return await resp.text();
    } finally {
      clearTimeout(timer);
    }
  }

  async _lookup() {
    const answer = JSON.parse(await this._fetchText(lookupUrl(this.web, this.key)));
    if (answer.ret !== 0 || !answer.data || !answer.data.server) throw new Error(`no comet for the key (ret ${answer.ret})`);
    return answer.data.server;
  }

  _deliver(message) {
    const { mid, msg, gid } = message;
    if (gid !== 0) {
      // Room and broadcast mids come from web, not from the key's line: they are not comparable
      // with private mids, so they neither pass through nor move the resume position.
      const group = { mid, msg, gid, server: this.server };
      if (message.room !== undefined) group.room = message.room;
      this._emit("message", group);
    } else if (this.dedupe.accept(mid)) {
      this._emit("message", { mid, msg, gid, server: this.server });
    }
  }

  // Resolves when the connection ends, whoever ends it.
  _subscribe(server) {
    const Socket = this.options.WebSocket || globalThis.WebSocket;
    if (!Socket) throw new Error("no WebSocket: pass options.WebSocket");
    const secure = this.options.secure ?? /^https:/.test(this.web);
    const url = subscribeUrl(server, this.key, {
      heartbeat: this.options.heartbeat,
      mid: this.dedupe.last,
      token: this.options.token,
      secure,
      rooms: this.options.rooms || [],
    });
    return new Promise((resolve) => {
      const ws = new Socket(url);
      this._ws = ws;
      const beatMs = this.options.heartbeat * 1000;
      let beat = null;
      let idle = null;
      // Live messages wait here while a fallback fetch runs, so they cannot pass older ones.
      let pending = null;
      const touch = () => {
        clearTimeout(idle);
        // The server answers every heartbeat: silence past two of them means a dead connection.
        idle = setTimeout(() => ws.close(), 2 * beatMs + 5000);
      };
      const end = () => {
        clearInterval(beat);
        clearTimeout(idle);
        if (this._ws === ws) this._ws = null;
        resolve();
      };
      ws.onopen = touch;
      ws.onerror = () => this._emit("error", new Error(`websocket to ${server} failed`));
      ws.onclose = end;
      ws.onmessage = (event) => {
        touch();
        let frame;
        try {
          frame = parseFrame(String(event.data));
        } catch (e) {
          this._emit("error", e);
          return;
        }
        if (frame.type === "heartbeat") {
          if (beat === null) {
            beat = setInterval(() => ws.send("h"), beatMs);
            this.attempt = 0;
            this._setState("connected");
          }
        } else if (frame.type === "refused") {
          this._emit("error", new Error(`comet ${server} refused the subscription (-${frame.code})`));
          ws.close();
        } else if (frame.type === "resume-failed") {
          pending = [];
          this._fallback().then(
            () => {
              for (const m of pending) this._deliver(m);
              pending = null;
            },
            (e) => {
              this._emit("error", e);
              ws.close();
            },
          );
        } else if (pending) {
          pending.push(frame);
        } else {
          this._deliver(frame);
        }
      };
    });
  }

  async _fallback() {
    const body = await this._fetchText(messagesUrl(this.web, this.key, this.dedupe.last));
    for (const m of parseMessages(body)) this._deliver(m);
  }
}
