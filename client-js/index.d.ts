// Type declarations of tandem-client (checked by test/types/example.ts with
// `tsc --noEmit` in the test suite).

export type Scalar = null | boolean | number | bigint | string;
/** What can be written: scalars, and plain arrays/objects (become nested lists/maps). */
export type Writable = Scalar | Writable[] | { [key: string]: Writable };
/** What is read back: scalars, or the wrapper of a nested object. */
export type Value = Scalar | Text | List | TMap;
export type JSONValue = null | boolean | number | bigint | string | JSONValue[] | { [key: string]: JSONValue };

export type Status = 'connecting' | 'online' | 'offline';

export type DeltaOp<I> = { retain: number } | { delete: number } | { insert: I };

export interface Range { index: number; length: number }

export interface TextChange {
  target: Text; kind: 'text'; local: boolean;
  /** Against the state before the change; UTF-16 units. Absent when reset. */
  delta?: DeltaOp<string>[];
  /** Positions after the change. */
  inserted?: Range[];
  /** Positions before the change. */
  deleted?: Range[];
  /** The object must be re-read (e.g. the replica was rebuilt). */
  reset?: boolean;
}
export interface ListChange {
  target: List; kind: 'list'; local: boolean;
  delta?: DeltaOp<Value[]>[];
  inserted?: Range[];
  deleted?: Range[];
  reset?: boolean;
}
export interface MapChange {
  target: TMap; kind: 'map'; local: boolean;
  /** Keys whose value changed (or were deleted). */
  keys?: string[];
  reset?: boolean;
}
export type ObjectChange = TextChange | ListChange | MapChange;

export interface ChangeEvent {
  /** true for this client's own edits, false for batches from the server. */
  local: boolean;
  /** The origin given to doc.transact(fn, origin); an UndoManager for its undo/redo. */
  origin?: unknown;
  changes: ObjectChange[];
}

/**
 * A relative position (text.anchor / list.anchor): tied to an item's id, so
 * doc.resolve() finds it after any concurrent edit. Plain JSON: it can
 * travel in presence.
 */
export interface Anchor {
  kind: 'text' | 'list';
  /** The root object's name, for roots. */
  root?: string;
  /** "agent:seq" of the op that created a nested object. */
  obj?: string;
  /** "agent:seq" of the item; null for the start (assoc -1) or the end (assoc 1). */
  item: string | null;
  /** 1: the position stays before the item; -1: after the item before it. */
  assoc: 1 | -1;
}

export interface TandemError {
  /** Protocol error name ('token_invalid', 'forbidden', ...) or a client one ('bad_message', 'storage', 'timeout', ...). */
  code: string;
  /** Protocol error number, for server errors. */
  number?: number;
  doc?: string;
  message: string;
  /**
   * Nothing more happens by itself: for a refused token, give a new one with
   * setToken(); for `too_large` on a batch already split for the server's
   * limit, the document keeps its edits but sends nothing until it is
   * opened again.
   */
  fatal?: boolean;
  /** A batch the server refused for good was discarded and the replica rebuilt. */
  dropped?: boolean;
  /**
   * A refused batch (`missing_ops`, `agent_taken`, or `too_large` after the
   * server's limit shrank) is being repaired: the document resubscribes and
   * sends what the server lacks instead. No edit is lost; informational.
   */
  recovering?: boolean;
}

type Unsubscribe = () => void;

declare class Emitting<Events extends Record<string, (...args: any[]) => void>> {
  on<K extends keyof Events>(name: K, fn: Events[K]): Unsubscribe;
  once<K extends keyof Events>(name: K, fn: Events[K]): Unsubscribe;
  off<K extends keyof Events>(name: K, fn: Events[K]): void;
}

export declare class Text extends Emitting<{ change: (c: TextChange) => void }> {
  readonly kind: 'text';
  readonly doc: Doc;
  /** Length in UTF-16 code units, like String.length. */
  readonly length: number;
  /** A position tied to the character at index (assoc >= 0, default) or before it (assoc < 0). */
  anchor(index: number, assoc?: number): Anchor;
  insert(index: number, text: string): void;
  delete(index: number, length?: number): void;
  replace(index: number, length: number, text: string): void;
  toString(): string;
  toJSON(): string;
}

export declare class List extends Emitting<{ change: (c: ListChange) => void }> {
  readonly kind: 'list';
  readonly doc: Doc;
  readonly length: number;
  /** A position tied to the element at index (assoc >= 0, default) or before it (assoc < 0). */
  anchor(index: number, assoc?: number): Anchor;
  insert(index: number, ...values: Writable[]): void;
  push(...values: Writable[]): void;
  delete(index: number, count?: number): void;
  get(index: number): Value | undefined;
  toArray(): Value[];
  toJSON(): JSONValue[];
  insertText(index: number, text?: string): Text;
  insertList(index: number, items?: Writable[]): List;
  insertMap(index: number, entries?: { [key: string]: Writable }): TMap;
}

export declare class TMap extends Emitting<{ change: (c: MapChange) => void }> {
  readonly kind: 'map';
  readonly doc: Doc;
  readonly size: number;
  get(key: string): Value | undefined;
  has(key: string): boolean;
  set(key: string, value: Writable): void;
  delete(key: string): void;
  keys(): string[];
  entries(): [string, Value][];
  toJSON(): { [key: string]: JSONValue };
  setText(key: string, text?: string): Text;
  setList(key: string, items?: Writable[]): List;
  setMap(key: string, entries?: { [key: string]: Writable }): TMap;
}

export interface Peer<S = unknown> {
  session: number;
  /** The peer's replica id (a 64-bit number, as a decimal string). */
  agent: string;
  /** From the peer's token; empty when the server runs open. */
  user: string;
  state: S;
}

export declare class Presence<S = any> extends Emitting<{ change: (peers: Peer<S>[]) => void }> {
  /** This client's state, as last set. */
  readonly state: S | undefined;
  /** The other clients in the document. */
  readonly peers: Peer<S>[];
  /** Any JSON value; sent at most once per server interval, heartbeated at ttl/2. */
  set(state: S): void;
}

/** What one undo/redo reverts; `meta` is free for the application (e.g. a selection). */
export interface StackItem {
  readonly meta: Map<unknown, unknown>;
}

export interface UndoManagerOptions {
  /** Objects whose edits (and those of objects nested in them) are tracked; default the whole document. */
  scope?: (Text | List | TMap)[];
  /** Edits closer than this (ms) to the previous one join its stack item. Default 500. */
  captureTimeout?: number;
  /** Origins of doc.transact(fn, origin) tracked besides edits without one. */
  trackedOrigins?: Iterable<unknown>;
}

export declare class UndoManager extends Emitting<{
  'stack-item-added': (e: { stackItem: StackItem; type: 'undo' | 'redo' }) => void;
  'stack-item-popped': (e: { stackItem: StackItem; type: 'undo' | 'redo' }) => void;
}> {
  readonly doc: Doc;
  captureTimeout: number;
  readonly undoStack: StackItem[];
  readonly redoStack: StackItem[];
  /** Reverts this client's latest stack item that still changes something; null if none. */
  undo(): StackItem | null;
  redo(): StackItem | null;
  canUndo(): boolean;
  canRedo(): boolean;
  /** The next edit starts a new stack item. */
  stopCapturing(): void;
  clear(): void;
  /** Stops tracking and forgets both stacks. */
  destroy(): void;
}

export declare class Doc extends Emitting<{
  change: (e: ChangeEvent) => void;
  synced: (synced: boolean) => void;
  error: (e: TandemError) => void;
}> {
  readonly id: string;
  readonly client: Client;
  readonly presence: Presence;
  text(name: string): Text;
  list(name: string): List;
  map(name: string): TMap;
  /** Everything fn edits is one batch and one change event (with e.origin = origin). */
  transact<R>(fn: (doc: Doc) => R, origin?: unknown): R;
  /** Undo/redo of this client's own edits. */
  undoManager(opts?: UndoManagerOptions): UndoManager;
  /** The current index of an anchor (made here or by a peer); null if this replica lacks its object or item yet. */
  resolve(anchor: Anchor): number | null;
  /** This replica's agent id (changes after a rebuild or `agent_taken`). */
  readonly agent: bigint;
  /** Resolves once the first SYNC arrived and every local edit is acknowledged. */
  readonly synced: Promise<void>;
  /** The flag behind `synced`. */
  readonly isSynced: boolean;
  /** Unacknowledged batches, in order; each at most the server's max_batch. */
  readonly pending: ReadonlyArray<{ batch: Uint8Array }>;
  toJSON(): { [root: string]: JSONValue };
  /** Writes the local copy (IndexedDB) now. */
  save(): Promise<void>;
  close(): Promise<void>;
}

export interface Storage {
  load(key: string): Promise<{ snapshot: Uint8Array | null; pending: { rid: string; batch: Uint8Array }[] }>;
  addPending(key: string, rid: string, batch: Uint8Array): Promise<void>;
  save(key: string, snapshot: Uint8Array, removedRids: string[]): Promise<void>;
}

export declare class MemoryStorage implements Storage {
  load(key: string): Promise<{ snapshot: Uint8Array | null; pending: { rid: string; batch: Uint8Array }[] }>;
  addPending(key: string, rid: string, batch: Uint8Array): Promise<void>;
  save(key: string, snapshot: Uint8Array, removedRids: string[]): Promise<void>;
}
export declare class IdbStorage extends MemoryStorage {
  constructor(dbName?: string);
}

export type TokenSource = string | (() => string | Promise<string>);

/** What the `wasm` option takes: see ConnectOptions.wasm. */
export type WasmSource = string | URL | ArrayBuffer | ArrayBufferView | Response |
  PromiseLike<Response> | WebAssembly.Module;

export interface ConnectOptions {
  /** A token, or a function called on every connect and when the server says it expired. */
  token?: TokenSource;
  /**
   * The core, when not the package's own (default: in Node the tandem_crdt.wasm
   * beside package.json; in browsers and bundlers the bytes inlined in the
   * browser entry). A URL or string (browsers: a URL, fetched; Node: a path or a
   * file:/http(s): URL), bytes, a Response or a promise of one (`fetch(url)`),
   * or a compiled WebAssembly.Module.
   */
  wasm?: WasmSource;
  /** A WebSocket class (default: the global one, or the `ws` package in Node). */
  WebSocket?: unknown;
  /** Document persistence (default: IndexedDB in browsers, none in Node); null disables it. */
  storage?: Storage | null;
  /** Reconnect delays: random in [0, min(capMs, baseMs * 2^attempt)). Defaults 500 and 30000. */
  backoff?: { baseMs?: number; capMs?: number };
  /**
   * With several URLs: the one to try first (one of them, or its index).
   * Default: a random one, so that clients spread over the nodes.
   */
  firstUrl?: string | number;
  /**
   * Protocol version 2: large messages travel deflated (docs/PROTOCOL.md
   * section 3.9). Default true; false speaks version 1, uncompressed. Against
   * a server that only speaks version 1 the client falls back by itself.
   */
  compression?: boolean;
  /**
   * Agent id (1..2^64-1) for HELLO and every document's replica (tests).
   * Default: random per document. Never reuse one for a fresh replica of a
   * document that already holds ops of it.
   */
  agent?: bigint | number | string;
}

export interface Limits {
  maxFrame: number; maxBatch: number; maxPresence: number;
  presenceIntervalMs: number; presenceTtlMs: number;
}

export declare class Client extends Emitting<{
  status: (s: Status) => void;
  error: (e: TandemError) => void;
  /** A connection closed; `url` is the server it was to (the next attempt goes to the next URL). */
  disconnect: (e: { code: number; reason: string; url: string }) => void;
}> {
  /** The server URL in use, or tried next while offline. */
  readonly url: string;
  /** Every server URL given to connect(), in that order. */
  readonly urls: readonly string[];
  readonly status: Status;
  /** When the next reconnect attempt is due (ms since the epoch), while offline. */
  readonly nextAttemptAt?: number;
  /** This connection's session id (0 while not online). */
  readonly session: number;
  /** The token's user (empty when the server runs open). */
  readonly user: string;
  /** From the server's WELCOME; null before the first (batches are then split for the protocol's 4 MiB). */
  readonly limits: Limits | null;
  /** The protocol version of the connection: 2 (deflated messages), 1, or 0 while not online. */
  readonly protocol: number;
  /** The agent id sent in HELLO (the `agent` option, or random). */
  readonly agent: bigint;
  /** True between disconnect() and connect(). */
  readonly disconnected: boolean;
  /** Opens a document; opening it again shares the subscription. `agent` as in ConnectOptions, for this document. */
  open(id: string, opts?: { agent?: bigint | number | string }): Promise<Doc>;
  setToken(token: TokenSource): void;
  /** Goes offline on purpose: no connection, no retries; edits are kept and sent on connect(). */
  disconnect(): void;
  /** Ends disconnect(): connects now (also retries at once after a refused token). */
  connect(): void;
  /** Reconnects now; also ends disconnect(). */
  reconnect(): void;
  close(): Promise<void>;
}

/**
 * One server URL, several separated by commas, or an array of them (nodes of
 * one cluster): the client starts at a random one and moves to the next,
 * round-robin, whenever an attempt fails or a connection drops.
 */
export declare function connect(urls: string | URL | ReadonlyArray<string | URL>, opts?: ConnectOptions): Promise<Client>;

/** A replica with no connection (tools, tests). */
export declare function createReplica(opts?: {
  wasm?: ConnectOptions['wasm']; agent?: bigint; snapshot?: Uint8Array; id?: string;
}): Promise<Doc>;

export declare class CoreError extends Error {
  code: number;
  codeName: string;
}
