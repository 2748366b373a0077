// Talking to service A: JSON-RPC 2.0 over `POST /rpc` and the `/ws` websocket (same methods).
//
//   call(method, params)         one request over HTTP; asks for the API token on -32004
//   new Live().start()           websocket that authenticates, subscribes to events, dispatches
//                                notifications as DOM events named after the method
//                                ('task.updated', 'task.removed', 'worker.updated', ...) and
//                                reconnects with backoff ('open' fires after each (re)subscribe)
//   checkMagnet(text)            instant client-side check before task.add; A checks again

export const ErrorCode = Object.freeze({
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  UNKNOWN_TASK: -32001,
  NO_WORKER: -32002,
  NOT_PLAYABLE: -32003,
  UNAUTHORIZED: -32004,
  UNKNOWN_SESSION: -32005,
  WORKER_BUSY: -32006,
  INVALID_TRANSITION: -32007,
  WORKER_GONE: -32010,
});

/** An error answered by A (JSON-RPC error object), or a transport failure (code null). */
export class RpcError extends Error {
  constructor(code, message, data = undefined) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.data = data;
  }
}

const TOKEN_KEY = 'torrentm3u8.token';
const CALL_TIMEOUT = 30_000; // milliseconds
const RECONNECT_MIN_DELAY = 1_000; // milliseconds
const RECONNECT_MAX_DELAY = 15_000; // milliseconds
const MAX_TOKEN_PROMPTS = 3;

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled (private mode): the token lasts for this page only.
  }
}

let nextId = 1;

function request(method, params) {
  const message = { jsonrpc: '2.0', id: nextId++, method };
  if (params !== undefined) message.params = params;
  return message;
}

function errorFromReply(reply) {
  const { code = null, message = 'unknown error', data } = reply.error ?? {};
  return new RpcError(code, message, data);
}

async function post(method, params) {
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch('/rpc', {
      method: 'POST',
      headers,
      body: JSON.stringify(request(method, params)),
    });
  } catch (err) {
    throw new RpcError(null, `cannot reach the server (${err.message}); check your connection`);
  }
  if (response.status === 204) return null;
  let reply;
  try {
    reply = await response.json();
  } catch {
    throw new RpcError(null, `the server answered HTTP ${response.status}; try again later`);
  }
  if (reply && reply.error) throw errorFromReply(reply);
  if (!response.ok) throw new RpcError(null, `the server answered HTTP ${response.status}`);
  return reply ? reply.result : null;
}

/** Calls `method` on A over HTTP. On -32004 asks the user for the API token and retries. */
export async function call(method, params = undefined) {
  for (let prompts = 0; ; prompts += 1) {
    try {
      return await post(method, params);
    } catch (err) {
      if (err.code !== ErrorCode.UNAUTHORIZED || prompts >= MAX_TOKEN_PROMPTS) throw err;
      const hadToken = Boolean(getToken());
      const token = await askToken(
        hadToken ? 'The server refused the saved token.' : 'This server needs an API token.',
      );
      if (token === null) throw err;
    }
  }
}

// --- API token dialog ------------------------------------------------------------------------

let pendingPrompt = null;

/** Shows the token dialog; resolves to the new token (saved) or null if the user cancels. */
export function askToken(reason) {
  if (pendingPrompt) return pendingPrompt;
  pendingPrompt = new Promise((resolve) => {
    const dialog = tokenDialog();
    dialog.querySelector('#token-reason').textContent = reason;
    const input = dialog.querySelector('#token-input');
    input.value = '';
    dialog.returnValue = '';
    dialog.addEventListener(
      'close',
      () => {
        pendingPrompt = null;
        const token = input.value.trim();
        if (dialog.returnValue === 'ok' && token) {
          setToken(token);
          resolve(token);
        } else {
          resolve(null);
        }
      },
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
  return pendingPrompt;
}

function tokenDialog() {
  let dialog = document.getElementById('token-dialog');
  if (dialog) return dialog;
  dialog = document.createElement('dialog');
  dialog.id = 'token-dialog';
  dialog.dataset.testid = 'token-dialog';
  dialog.setAttribute('aria-labelledby', 'token-title');
  dialog.innerHTML = `
    <form method="dialog">
      <h2 id="token-title">API token needed</h2>
      <p id="token-reason"></p>
      <label for="token-input">API token</label>
      <input id="token-input" name="token" type="password" autocomplete="current-password"
             required data-testid="token-input">
      <div class="actions">
        <button type="submit" value="cancel" formnovalidate>Cancel</button>
        <button type="submit" value="ok" class="primary" data-testid="token-submit">
          Use token</button>
      </div>
    </form>`;
  document.body.append(dialog);
  return dialog;
}

// --- Magnet check ----------------------------------------------------------------------------

/** Returns '' when `text` looks like a magnet link, else a message the user can act on. */
export function checkMagnet(text) {
  const magnet = String(text ?? '').trim();
  if (!magnet) return 'Paste a magnet link first.';
  if (!/^magnet:\?/i.test(magnet)) return 'Not a magnet link: it must start with "magnet:?".';
  if (!/[?&]xt=urn:(btih|btmh):[^&]+/i.test(magnet)) {
    return 'Not a magnet link: missing xt=urn:btih (or xt=urn:btmh) with the info hash.';
  }
  return '';
}

// --- Live websocket --------------------------------------------------------------------------

/**
 * The /ws connection. Events: 'status' ({state, retryIn, error}) with state one of
 * connecting | open | closed | unauthorized; 'open' after each successful (re)subscribe
 * (re-fetch what you show); one event per notification method, detail = params.
 */
export class Live extends EventTarget {
  #ws = null;
  #pending = new Map();
  #attempt = 0;
  #timer = null;
  #stopped = false;
  #subscribe;
  #lastError = null;
  state = 'closed';

  constructor({ subscribe = true } = {}) {
    super();
    this.#subscribe = subscribe;
    window.addEventListener('online', () => this.#reconnectNow());
  }

  start() {
    this.#stopped = false;
    this.#connect();
    return this;
  }

  close() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#ws?.close(1000);
  }

  /** A JSON-RPC call over the websocket (needed where A answers on the same connection). */
  call(method, params = undefined, { timeout = CALL_TIMEOUT } = {}) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new RpcError(null, 'not connected to the server; retrying'));
    }
    const message = request(method, params);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(message.id);
        const seconds = timeout / 1000;
        reject(new RpcError(null, `no answer from the server to ${method} within ${seconds} s`));
      }, timeout);
      this.#pending.set(message.id, { resolve, reject, timer });
      ws.send(JSON.stringify(message));
    });
  }

  #setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, ...extra } }));
  }

  #connect() {
    clearTimeout(this.#timer);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.#ws = ws;
    this.#setState('connecting');
    ws.addEventListener('open', () => this.#handshake(ws));
    ws.addEventListener('message', (event) => this.#receive(event.data));
    ws.addEventListener('close', () => this.#closed(ws));
  }

  async #handshake(ws) {
    let token = getToken();
    for (let prompts = 0; ; prompts += 1) {
      try {
        if (token) await this.call('auth', { token });
        if (this.#subscribe) await this.call('events.subscribe');
        break;
      } catch (err) {
        if (ws !== this.#ws) return;
        if (err.code !== ErrorCode.UNAUTHORIZED || prompts >= MAX_TOKEN_PROMPTS) {
          this.#lastError = err;
          ws.close(4000);
          return;
        }
        token = await askToken(
          token ? 'The server refused the saved token.' : 'This server needs an API token.',
        );
        if (token === null) {
          this.#stopped = true;
          this.#setState('unauthorized', { error: err });
          ws.close(1000);
          return;
        }
      }
    }
    this.#attempt = 0;
    this.#lastError = null;
    this.#setState('open');
    this.dispatchEvent(new Event('open'));
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    for (const item of Array.isArray(message) ? message : [message]) {
      if (item && typeof item.method === 'string') {
        this.dispatchEvent(new CustomEvent(item.method, { detail: item.params ?? {} }));
      } else if (item && this.#pending.has(item.id)) {
        const { resolve, reject, timer } = this.#pending.get(item.id);
        this.#pending.delete(item.id);
        clearTimeout(timer);
        if (item.error) reject(errorFromReply(item));
        else resolve(item.result);
      }
    }
  }

  #closed(ws) {
    if (ws !== this.#ws) return;
    for (const { reject, timer } of this.#pending.values()) {
      clearTimeout(timer);
      reject(new RpcError(null, 'the connection to the server closed'));
    }
    this.#pending.clear();
    this.#ws = null;
    if (this.#stopped) {
      if (this.state !== 'unauthorized') this.#setState('closed');
      return;
    }
    const base = Math.min(RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY * 2 ** this.#attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.#attempt += 1;
    this.#setState('closed', { retryIn: delay, error: this.#lastError });
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #reconnectNow() {
    if (this.#stopped || this.#ws) return;
    this.#attempt = 0;
    this.#connect();
  }
}

// --- Shared page widgets that depend on A ----------------------------------------------------

/**
 * Keeps `element` (the worker indicator) in sync with worker.list + worker.updated.
 * Sets data-connected="true|false" and data-count on it.
 */
export function watchWorkers(live, element) {
  const workers = new Map();
  const render = () => {
    const connected = [...workers.values()].filter((w) => w.connected).length;
    element.dataset.connected = String(connected > 0);
    element.dataset.count = String(connected);
    const text = element.querySelector('.text') ?? element;
    if (connected === 0) text.textContent = 'No worker connected';
    else if (connected === 1) text.textContent = 'Worker connected';
    else text.textContent = `${connected} workers connected`;
    element.title = connected
      ? 'Downloads and streams can run'
      : 'Tasks wait until a worker connects to this server';
  };
  const refresh = async () => {
    try {
      const list = await call('worker.list');
      workers.clear();
      for (const worker of list ?? []) workers.set(worker.id, worker);
      render();
    } catch (err) {
      element.dataset.connected = 'unknown';
      (element.querySelector('.text') ?? element).textContent = 'Worker status unknown';
      element.title = err.message;
    }
  };
  live.addEventListener('open', refresh);
  live.addEventListener('worker.updated', (event) => {
    const worker = event.detail.worker;
    if (worker && worker.id !== undefined) {
      workers.set(worker.id, worker);
      render();
    }
  });
  return refresh;
}

/** Shows the websocket state in `element` (an aria-live region). */
export function watchLiveStatus(live, element) {
  live.addEventListener('status', (event) => {
    const { state, retryIn, error } = event.detail;
    element.dataset.state = state;
    if (state === 'open') element.textContent = 'Live';
    else if (state === 'connecting') element.textContent = 'Connecting…';
    else if (state === 'unauthorized') {
      element.textContent = 'Not signed in: reload the page to enter the API token';
    }
    else {
      const seconds = Math.max(1, Math.round((retryIn ?? 0) / 1000));
      element.textContent = `Offline, retrying in ${seconds} s`;
      element.title = error ? error.message : '';
    }
  });
}
