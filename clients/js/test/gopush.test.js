// The client's pure logic, under Node's own test runner: back-off, dedupe, URLs and frame parsing.
// The networked behaviour is tested in real Chromium by web/tests/browser.rs.
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
});

test("frames: status lines and messages, with the top-level mid only", () => {
  assert.deepEqual(parseFrame("+h\r\n"), { type: "heartbeat" });
  assert.deepEqual(parseFrame("+r\r\n"), { type: "resume-failed" });
  assert.deepEqual(parseFrame("-n\r\n"), { type: "refused", code: "n" });
  const m = parseFrame('{"msg":{"mid":1,"t":"\\u003cb\\u003e"},"mid":17000000000000001,"gid":0}');
  assert.deepEqual(m, { type: "message", mid: "17000000000000001", msg: { mid: 1, t: "<b>" } });
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
