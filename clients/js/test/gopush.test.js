// The client under Node's own test runner: back-off, dedupe, URLs, frame parsing, and the GoPush
// state machine against a hand-driven WebSocket stand-in and a stubbed fetch, because the `+r`
// fallback and exact frame interleavings cannot be caused on demand with real servers. Against real
// servers, in real Chromium, the client is tested by gopush/tests/browser.rs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoff, Dedupe, lookupUrl, messagesUrl, newer, parseFrame, parseMessages, subscribeUrl } from "../gopush.js";

test("back-off doubles up to the ceiling and jitters within its upper half", () => {
  assert.equal(backoff(0, 500, 30000, () => 1), 500);
  assert.equal(backoff(0, 500, 30000, () => 0), 250);
  assert.equal(backoff(3, 500, 30000, () => 1), 4000);
  assert.equal(backoff(10, 500, 30000, () => 1), 30000, "capped");
  assert.equal(backoff(1000, 500, 30000, () => 0.5), 22500, "huge attempts do not overflow");
  for (let i = 0; i < 100; i++) {
    const d = backoff(4, 500, 30000);
    assert.ok(d >= 4000 && d <= 8000, `${d}`);
  }
});

test("dedupe compares 17-digit mids exactly", () => {
  const d = new Dedupe("0");
  // These two differ by one, which a JavaScript number cannot tell apart.
  assert.ok(d.accept("17000000000000001"));
  assert.ok(d.accept("17000000000000002"));
  assert.ok(!d.accept("17000000000000002"), "a repeat");
  assert.ok(!d.accept("17000000000000001"), "an older one");
  assert.equal(d.last, "17000000000000002");
  assert.ok(newer("100000000000000000", "99999999999999999"));
  assert.ok(new Dedupe("5").accept("6"));
});

test("urls escape the key and ask for the new format and a resume", () => {
  assert.equal(lookupUrl("http://w:8090/", "a b&c"), "http://w:8090/1/server/get?k=a%20b%26c&p=1");
  assert.equal(messagesUrl("http://w:8090", "k", "17"), "http://w:8090/1/msg/get?k=k&m=17");
  assert.equal(
    subscribeUrl("c:6968", "Terry-Mao", { heartbeat: 30, mid: "123" }),
    "ws://c:6968/sub?key=Terry-Mao&heartbeat=30&ver=1&mid=123",
  );
  assert.equal(
    subscribeUrl("c:443", "k/1", { heartbeat: 60, mid: "0", token: "t=1", secure: true }),
    "wss://c:443/sub?key=k%2F1&heartbeat=60&token=t%3D1&ver=1&mid=0",
  );
  assert.equal(
    subscribeUrl("c:6968", "k", { heartbeat: 30, mid: "0", rooms: ["live", "a b"] }),
    "ws://c:6968/sub?key=k&heartbeat=30&ver=1&mid=0&room=live,a%20b",
  );
});

test("room and broadcast frames: gid, and the room of a new-format room message", () => {
  assert.deepEqual(parseFrame('{"msg":{"t":1},"mid":17000000000000002,"gid":1,"room":"lob\\"by"}'), {
    type: "message",
    mid: "17000000000000002",
    msg: { t: 1 },
    gid: 1,
    room: 'lob"by',
  });
  assert.deepEqual(parseFrame('{"msg":"{\\"t\\":1}","mid":5,"gid":1}'), { type: "message", mid: "5", msg: '{"t":1}', gid: 1 });
  assert.deepEqual(parseFrame('{"msg":{"all":true},"mid":6,"gid":2}'), { type: "message", mid: "6", msg: { all: true }, gid: 2 });
  assert.throws(() => parseFrame('{"msg":1,"mid":6,"gid":1,"room":"x"} '));
});

test("frames: status lines and messages, with the top-level mid only", () => {
  assert.deepEqual(parseFrame("+h\r\n"), { type: "heartbeat" });
  assert.deepEqual(parseFrame("+r\r\n"), { type: "resume-failed" });
  assert.deepEqual(parseFrame("-n\r\n"), { type: "refused", code: "n" });
  const m = parseFrame('{"msg":{"mid":1,"t":"\\u003cb\\u003e"},"mid":17000000000000001,"gid":0}');
  assert.deepEqual(m, { type: "message", mid: "17000000000000001", msg: { mid: 1, t: "<b>" }, gid: 0 });
  assert.throws(() => parseFrame("junk"));
});

test("msg/get answers split into messages, strings with brackets included", () => {
  const body =
    '{"data":{"msgs":[{"msg":{"a":"],}{\\"["},"mid":17000000000000001,"gid":0},' +
    '{"msg":[1,2],"mid":17000000000000002,"gid":0}]},"ret":0}';
  const got = parseMessages(body);
  assert.deepEqual(got.map((m) => m.mid), ["17000000000000001", "17000000000000002"]);
  assert.deepEqual(got[0].msg, { a: '],}{"[' });
  assert.deepEqual(parseMessages('{"ret":0}'), []);
  assert.throws(() => parseMessages('{"ret":65535}'));
  assert.throws(() => parseMessages('{"data":{"msgs":[{"msg":1,"mid":1,"gid":0}'));
});

// A stand-in for the browser's WebSocket that the test drives by hand.
class FakeSocket {
  static opened = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    FakeSocket.opened.push(this);
    queueMicrotask(() => this.onopen && this.onopen());
  }
  send(data) {
    this.sent.push(data);
  }
  close() {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => this.onclose && this.onclose());
  }
  frame(text) {
    this.onmessage({ data: text });
  }
}

const until = async (what, cond) => {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`gave up waiting for ${what}`);
};

test("the client resumes, drops repeats, falls back on +r and looks the comet up again after a drop", async () => {
  const { GoPush } = await import("../gopush.js");
  const lookups = [];
  const fetched = [];
  globalThis.fetch = async (url) => {
    const text = url.includes("/1/server/get")
      ? (lookups.push(url), `{"data":{"server":"c${lookups.length}:1"},"ret":0}`)
      : (fetched.push(url), '{"data":{"msgs":[{"msg":3,"mid":17000000000000003,"gid":0}]},"ret":0}');
    return { ok: true, status: 200, text: async () => text };
  };
  FakeSocket.opened = [];
  const seen = [];
  const states = [];
  const c = new GoPush("http://w", "k", { WebSocket: FakeSocket, mid: "17000000000000000", backoffBase: 1, backoffMax: 2 });
  c.on("message", (m) => seen.push(m.mid));
  c.on("state", (s) => states.push(s.state));
  await until("a socket", () => FakeSocket.opened.length === 1);
  const first = FakeSocket.opened[0];
  assert.equal(first.url, "ws://c1:1/sub?key=k&heartbeat=30&ver=1&mid=17000000000000000");
  first.frame("+h\r\n");
  assert.equal(c.state, "connected");
  first.frame('{"msg":1,"mid":17000000000000001,"gid":0}');
  first.frame('{"msg":1,"mid":17000000000000001,"gid":0}');
  assert.deepEqual(seen, ["17000000000000001"], "a repeat is dropped");

  first.close();
  await until("a second socket", () => FakeSocket.opened.length === 2);
  const second = FakeSocket.opened[1];
  assert.equal(lookups.length, 2, "web is asked again");
  assert.ok(second.url.startsWith("ws://c2:1/") && second.url.endsWith("&mid=17000000000000001"), second.url);
  second.frame("+h\r\n");
  second.frame("+r\r\n");
  // A live message arriving during the fallback fetch waits behind what the fetch returns.
  second.frame('{"msg":4,"mid":17000000000000004,"gid":0}');
  await until("the fallback", () => seen.length === 3);
  assert.deepEqual(fetched, ["http://w/1/msg/get?k=k&m=17000000000000001"]);
  assert.deepEqual(seen, ["17000000000000001", "17000000000000003", "17000000000000004"]);
  c.close();
  assert.deepEqual(states.slice(0, 2), ["connecting", "connected"]);
  assert.ok(states.includes("disconnected"));
  assert.equal(states.at(-1), "closed");
});
