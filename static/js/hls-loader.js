// An hls.js loader that fetches playlists and segments over a P2PClient's data channel.
//
//   const hls = new Hls({ loader: makeP2PLoader(client), startPosition: 0 });
//   hls.loadSource(STREAM_URL);  // p2p://stream/index.m3u8
//   hls.attachMedia(video);
//
// URLs use the p2p: scheme, so segment URLs in the playlist resolve to the same scheme and
// nothing ever goes over HTTP: a URL outside the scheme is refused, not fetched. Always play
// through hls.js: Chromium claims native HLS ("maybe") and would fetch over HTTP.
//
// Like hls.js's own XhrLoader: `this.stats` is created once and mutated in place (hls.js keeps
// a reference from before load()), timeouts follow config.loadPolicy (time to first byte, then
// total load time), and retries follow loadPolicy.errorRetry / timeoutRetry before onError /
// onTimeout hand over to hls.js's error controller.

export const STREAM_PREFIX = 'p2p://stream/';
export const STREAM_URL = `${STREAM_PREFIX}index.m3u8`;

// 'p2p://stream/a/seg1.ts?x#y' -> 'a/seg1.ts'; null for any other URL.
export function streamPath(url, prefix = STREAM_PREFIX) {
  if (typeof url !== 'string' || !url.startsWith(prefix)) return null;
  const raw = url.slice(prefix.length).split(/[?#]/, 1)[0];
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

function newStats() {
  return {
    aborted: false,
    loaded: 0,
    retry: 0,
    total: 0,
    chunkCount: 0,
    bwEstimate: 0,
    loading: { start: 0, first: 0, end: 0 },
    parsing: { start: 0, end: 0 },
    buffering: { start: 0, first: 0, end: 0 },
  };
}

// hls.js's rule: retry timeouts, and statuses outside 4xx (a 404 will not get better).
function shouldRetry(retryConfig, retryCount, isTimeout, response) {
  if (!retryConfig) return false;
  const code = response?.code;
  const retry = retryCount < retryConfig.maxNumRetry && (isTimeout || (!!code && (code < 400 || code > 499)));
  return retryConfig.shouldRetry ? retryConfig.shouldRetry(retryConfig, retryCount, isTimeout, response, retry) : retry;
}

function retryDelay(retryConfig, retryCount) {
  const factor = retryConfig.backoff === 'linear' ? 1 : 2 ** retryCount;
  return Math.min(factor * retryConfig.retryDelayMs, retryConfig.maxRetryDelayMs);
}

export function makeP2PLoader(client, { prefix = STREAM_PREFIX } = {}) {
  return class P2PLoader {
    constructor(hlsConfig) {
      this.hlsConfig = hlsConfig;
      this.context = null;
      this.config = null;
      this.callbacks = null;
      this.stats = newStats();
      this._controller = null;
      this._timer = null;
      this._retryTimer = null;
    }

    load(context, config, callbacks) {
      if (this.stats.loading.start) throw new Error('Loader can only be used once.');
      this.stats.loading.start = performance.now();
      this.context = context;
      this.config = config;
      this.callbacks = callbacks;
      this._loadOnce();
    }

    abort() {
      this._stop();
      this.callbacks?.onAbort?.(this.stats, this.context, null);
    }

    destroy() {
      this._stop();
      this.callbacks = this.context = this.config = null;
    }

    getCacheAge() {
      return null;
    }

    getResponseHeader() {
      return null;
    }

    _loadOnce() {
      const { context, config, stats } = this;
      if (!context || !config) return;
      stats.loading.first = 0;
      stats.loaded = 0;
      stats.aborted = false;
      const path = streamPath(context.url, prefix);
      if (path === null) {
        const text = `refusing to load ${context.url}: only ${prefix} URLs are fetched (never over HTTP)`;
        this.callbacks?.onError({ code: 0, text }, context, null, stats);
        return;
      }
      const controller = (this._controller = new AbortController());
      const policy = config.loadPolicy || {};
      const maxLoad = policy.maxLoadTimeMs ?? config.timeout;
      const firstByte = Number.isFinite(policy.maxTimeToFirstByteMs) && policy.maxTimeToFirstByteMs
        ? policy.maxTimeToFirstByteMs
        : maxLoad;
      this._arm(firstByte);
      const onProgress = (loaded, total) => {
        if (controller !== this._controller) return;
        if (!stats.loading.first) {
          stats.loading.first = Math.max(performance.now(), stats.loading.start);
          if (firstByte !== maxLoad) this._arm(maxLoad - (stats.loading.first - stats.loading.start));
        }
        stats.loaded = loaded;
        stats.total = total;
      };
      client.fetch(path, { signal: controller.signal, onProgress, timeout: 0 }).then(
        (result) => {
          if (controller !== this._controller) return;
          this._clearTimers();
          this._controller = null;
          if (result.status === 200) this._succeed(result);
          else this._failed(result.status, result.error || `status ${result.status}`);
        },
        (error) => {
          if (controller !== this._controller) return;
          this._clearTimers();
          this._controller = null;
          this._failed(0, error.message);
        },
      );
    }

    _succeed(result) {
      const { context, stats } = this;
      const data = context.responseType === 'arraybuffer' ? result.data : new TextDecoder().decode(result.data);
      const now = performance.now();
      stats.loading.first = stats.loading.first || Math.max(now, stats.loading.start);
      stats.loading.end = Math.max(now, stats.loading.first);
      stats.loaded = stats.total = result.size;
      stats.chunkCount += 1;
      stats.bwEstimate = (stats.total * 8000) / Math.max(1, stats.loading.end - stats.loading.first);
      this.callbacks?.onProgress?.(stats, context, data, null);
      this.callbacks?.onSuccess({ url: context.url, data, code: 200 }, stats, context, null);
    }

    _failed(code, text) {
      const response = { url: this.context.url, data: undefined, code, text };
      const retryConfig = this.config.loadPolicy?.errorRetry;
      if (shouldRetry(retryConfig, this.stats.retry, false, response)) {
        this._retry(retryConfig);
      } else {
        this.callbacks?.onError({ code, text }, this.context, null, this.stats);
      }
    }

    _onTimeout() {
      const retryConfig = this.config?.loadPolicy?.timeoutRetry;
      if (shouldRetry(retryConfig, this.stats.retry, true)) {
        this._retry(retryConfig);
        return;
      }
      const callbacks = this.callbacks;
      this._stop();
      callbacks?.onTimeout(this.stats, this.context, null);
    }

    _retry(retryConfig) {
      const delay = retryDelay(retryConfig, this.stats.retry);
      this.stats.retry += 1;
      this._stop();
      this.stats.aborted = false;
      this._retryTimer = setTimeout(() => this._loadOnce(), delay);
    }

    _arm(ms) {
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this._onTimeout(), Math.max(0, ms));
    }

    _clearTimers() {
      clearTimeout(this._timer);
      clearTimeout(this._retryTimer);
    }

    // Stop the request in flight (B gets a cancel) and any pending retry.
    _stop() {
      this._clearTimers();
      const controller = this._controller;
      this._controller = null;
      if (controller) {
        this.stats.aborted = true;
        controller.abort();
      }
    }
  };
}
