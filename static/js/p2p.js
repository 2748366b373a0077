// P2PClient: fetch files of one HLS rendition from worker B over a WebRTC data channel.
//
// The protocol is docs/datachannel.md: text requests {"op":"get","id":N,"path":P} and
// {"op":"cancel","id":N}; B answers with a text header {"id":N,"status":200,"size":S,"type":T},
// binary chunks (4-byte big-endian id + payload) and a text {"id":N,"op":"end"}, or with one
// text {"id":N,"status":4xx|5xx,"error":"..."}.
//
// Signaling is injected: an object with
//   open()          -> Promise<{ice_servers?, ice_transport_policy?}>  (e.g. stream.open)
//   offer(sdp)      -> Promise<string | {sdp}>                          (e.g. stream.offer)
//   candidate(json) -> Promise                                          (e.g. stream.candidate;
//                      json is RTCIceCandidate.toJSON(), or null at the end of gathering)
//   close()         -> Promise                                          (e.g. stream.close)
//
//   const client = new P2PClient(signaling);
//   client.addEventListener('statechange', (e) => show(e.detail.state, e.detail.reason));
//   const {status, type, data} = await client.fetch('index.m3u8', {signal, onProgress});
//
// States: new -> connecting -> connected -> closed, or failed (with a reason) from any of them.

const MAX_ID = 0xffffffff;
const DEFAULT_CONNECT_TIMEOUT = 20000; // ms to reach an open data channel
const DEFAULT_REQUEST_TIMEOUT = 20000; // ms without a byte before a request fails

export class TimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = 'TimeoutError';
  }
}

function abortError() {
  return new DOMException('the request was aborted', 'AbortError');
}

export class P2PClient extends EventTarget {
  constructor(signaling, options = {}) {
    super();
    this.signaling = signaling;
    this.options = {
      iceServers: null, // overrides what signaling.open() returns
      iceTransportPolicy: null,
      connectTimeout: DEFAULT_CONNECT_TIMEOUT,
      requestTimeout: DEFAULT_REQUEST_TIMEOUT,
      ...options,
    };
    this.state = 'new';
    this.reason = null;
    this.pc = null;
    this.channel = null;
    this._connecting = null;
    this._requests = new Map(); // id -> request record
    this._nextId = 1;
  }

  // Resolves once the data channel is open; idempotent (fetch calls it too).
  connect() {
    if (!this._connecting) {
      this._connecting = this._connect();
      this._connecting.catch(() => {}); // reported through state; callers still get the error
    }
    return this._connecting;
  }

  async _connect() {
    this._setState('connecting');
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new TimeoutError('timed out connecting to the worker (no network route; a TURN server may be needed)')),
        this.options.connectTimeout,
      );
    });
    try {
      await Promise.race([this._negotiate(), timeout]);
      this._setState('connected');
    } catch (error) {
      this._fail(this.state === 'failed' ? this.reason : `could not connect: ${error.message}`);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async _negotiate() {
    const info = (await this.signaling.open()) || {};
    const iceServers = this.options.iceServers ?? info.ice_servers ?? info.iceServers ?? [];
    const iceTransportPolicy =
      this.options.iceTransportPolicy ?? info.ice_transport_policy ?? info.iceTransportPolicy ?? 'all';
    this._throwIfClosed();
    const pc = (this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy }));
    const channel = (this.channel = pc.createDataChannel('files', { ordered: true }));
    channel.binaryType = 'arraybuffer';
    channel.onmessage = (event) => this._onMessage(event.data);
    channel.onclose = () => this._fail('the worker closed the data channel');
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') this._fail('the peer connection failed (no ICE route to the worker)');
    };

    // Candidates wait until B has the offer: a candidate for an unknown session is lost.
    const queued = [];
    let answered = false;
    const sendCandidate = (json) => {
      Promise.resolve(this.signaling.candidate(json)).catch((error) => console.warn('candidate not delivered:', error));
    };
    pc.onicecandidate = (event) => {
      const json = event.candidate ? event.candidate.toJSON() : null;
      if (answered) sendCandidate(json);
      else queued.push(json);
    };
    const opened = new Promise((resolve, reject) => {
      channel.onopen = resolve;
      channel.onerror = (event) => reject(new Error(event.error?.message || 'data channel error'));
    });
    opened.catch(() => {}); // awaited below; this only keeps an early error from being "unhandled"

    await pc.setLocalDescription(await pc.createOffer());
    const answer = await this.signaling.offer(pc.localDescription.sdp);
    this._throwIfClosed();
    await pc.setRemoteDescription({ type: 'answer', sdp: typeof answer === 'string' ? answer : answer.sdp });
    answered = true;
    queued.splice(0).forEach(sendCandidate);
    await opened;
    this._throwIfClosed();
  }

  // -> Promise<{status, type, size, data: ArrayBuffer, error?}>. Rejects on transport problems
  // (TimeoutError, AbortError, a failed connection); a 404 resolves with status 404.
  async fetch(path, { signal, onProgress, timeout } = {}) {
    if (signal?.aborted) throw abortError();
    await this.connect();
    if (signal?.aborted) throw abortError();
    this._throwIfClosed();
    const id = this._nextId;
    this._nextId = this._nextId >= MAX_ID ? 1 : this._nextId + 1;
    return new Promise((resolve, reject) => {
      const request = {
        id, path, resolve, reject, onProgress, signal,
        header: null, buffer: null, loaded: 0, timer: null,
        timeout: timeout ?? this.options.requestTimeout,
      };
      request.onAbort = () => {
        this._finish(request);
        this._send({ op: 'cancel', id });
        reject(abortError());
      };
      signal?.addEventListener('abort', request.onAbort, { once: true });
      this._requests.set(id, request);
      this._armTimer(request);
      this._send({ op: 'get', id, path });
    });
  }

  close() {
    if (this.state === 'closed') return;
    this._setState('closed');
    this._rejectAll(new Error('the P2P client was closed'));
    this._teardown();
    Promise.resolve()
      .then(() => this.signaling.close?.())
      .catch(() => {});
  }

  _send(message) {
    if (this.channel?.readyState === 'open') this.channel.send(JSON.stringify(message));
  }

  _armTimer(request) {
    clearTimeout(request.timer);
    if (!request.timeout) return;
    request.timer = setTimeout(() => {
      this._finish(request);
      this._send({ op: 'cancel', id: request.id });
      request.reject(new TimeoutError(`no data for ${request.path} in ${request.timeout} ms`));
    }, request.timeout);
  }

  _finish(request) {
    clearTimeout(request.timer);
    request.signal?.removeEventListener('abort', request.onAbort);
    this._requests.delete(request.id);
  }

  _onMessage(data) {
    if (typeof data !== 'string') {
      this._onChunk(data);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.warn('worker sent a message that is not JSON');
      return;
    }
    const request = this._requests.get(message.id);
    if (!request) return; // cancelled or timed out: late replies are dropped
    if (message.op === 'end') {
      this._finish(request);
      const size = request.header?.size ?? 0;
      if (request.loaded !== size) {
        request.reject(new Error(`${request.path}: got ${request.loaded} of ${size} bytes`));
        return;
      }
      const { status, type } = request.header;
      request.resolve({ status, type, size, data: request.buffer.buffer });
    } else if (message.status === 200) {
      request.header = message;
      request.buffer = new Uint8Array(message.size);
      this._armTimer(request);
      request.onProgress?.(0, message.size);
    } else {
      this._finish(request);
      request.resolve({
        status: message.status, type: null, size: 0, data: new ArrayBuffer(0), error: message.error,
      });
    }
  }

  _onChunk(data) {
    if (data.byteLength < 4) return;
    const id = new DataView(data).getUint32(0);
    const request = this._requests.get(id);
    if (!request) return;
    const payload = new Uint8Array(data, 4);
    if (!request.buffer || request.loaded + payload.byteLength > request.buffer.byteLength) {
      this._finish(request);
      this._send({ op: 'cancel', id });
      request.reject(new Error(`${request.path}: the worker sent more bytes than announced`));
      return;
    }
    request.buffer.set(payload, request.loaded);
    request.loaded += payload.byteLength;
    this._armTimer(request);
    request.onProgress?.(request.loaded, request.buffer.byteLength);
  }

  _fail(reason) {
    if (this.state === 'failed' || this.state === 'closed') return;
    this.reason = reason;
    this._setState('failed');
    this._rejectAll(new Error(reason));
    this._teardown();
  }

  _rejectAll(error) {
    for (const request of [...this._requests.values()]) {
      this._finish(request);
      request.reject(error);
    }
  }

  _teardown() {
    if (this.channel) {
      this.channel.onclose = this.channel.onmessage = null;
      this.channel.close();
    }
    if (this.pc) {
      this.pc.onconnectionstatechange = this.pc.onicecandidate = null;
      this.pc.close();
    }
  }

  _throwIfClosed() {
    if (this.state === 'closed') throw new Error('the P2P client was closed');
    if (this.state === 'failed') throw new Error(this.reason);
  }

  _setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('statechange', { detail: { state, reason: this.reason } }));
  }
}
