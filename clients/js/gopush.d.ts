// Types of gopush.js.

/** Options of a GoPush client; every one is optional. */
export interface Options {
  /** Seconds between heartbeats; at least the server's min_heartbeat (30 by default). */
  heartbeat?: number;
  /** Resume after this mid (a decimal string); "0" gets every stored message. */
  mid?: string;
  /** First reconnect pause ceiling in ms; it doubles per failed attempt. */
  backoffBase?: number;
  /** Largest reconnect pause ceiling in ms. */
  backoffMax?: number;
  /** Deadline of a web request in ms. */
  lookupTimeout?: number;
  /** Auth token, when the comets run in auth mode. */
  token?: string;
  /** Use wss://; by default, when the web URL is https. */
  secure?: boolean;
  /** Rooms to join for this connection; the comets must allow it (`[channel] client_rooms`). */
  rooms?: string[];
  /** A WebSocket constructor, for Node versions without a global one. */
  WebSocket?: unknown;
}

/** A delivered message. */
export interface Message {
  /** Its id, a decimal string (17 digits do not fit a number exactly). */
  mid: string;
  /** The published JSON value. */
  msg: unknown;
  /** 0 for a message to the key, 1 for a room message, 2 for a broadcast. */
  gid: number;
  /** The room of a room message (gid 1). */
  room?: string;
  /** The comet it came from, host:port. */
  server: string | null;
}

/** A change of connection state. */
export interface StateChange {
  state: "connecting" | "connected" | "disconnected" | "closed";
  server: string | null;
  attempt: number;
  /** Before the next attempt, in ms (state "disconnected" only). */
  delay?: number;
}

export const DEFAULTS: Readonly<Required<Pick<Options, "heartbeat" | "mid" | "backoffBase" | "backoffMax" | "lookupTimeout">>>;
export function backoff(attempt: number, base?: number, max?: number, random?: () => number): number;
export function lookupUrl(web: string, key: string): string;
export function messagesUrl(web: string, key: string, mid: string): string;
export function subscribeUrl(server: string, key: string, opts?: { heartbeat?: number; mid?: string; token?: string; secure?: boolean; rooms?: string[] }): string;
export function newer(mid: string, than: string): boolean;
export class Dedupe {
  constructor(last?: string);
  last: string;
  accept(mid: string): boolean;
}
export type Frame =
  | { type: "heartbeat" }
  | { type: "resume-failed" }
  | { type: "refused"; code: string }
  | ParsedMessage;
/** A message frame as parsed; `room` only on room messages in the new format. */
export interface ParsedMessage {
  type: "message";
  mid: string;
  msg: unknown;
  gid: number;
  room?: string;
}
export function parseFrame(text: string): Frame;
export function parseMessage(text: string): ParsedMessage;
export function parseMessages(body: string): ParsedMessage[];

export class GoPush {
  constructor(web: string, key: string, options?: Options);
  readonly web: string;
  readonly key: string;
  state: "idle" | StateChange["state"];
  server: string | null;
  attempt: number;
  readonly lastMid: string;
  on(event: "message", fn: (m: Message) => void): () => void;
  on(event: "state", fn: (s: StateChange) => void): () => void;
  on(event: "error", fn: (e: Error) => void): () => void;
  close(): void;
}
