// Human units for sizes, speeds, durations, times, and the words shown for task states.
// Pure functions: no DOM, no network (the browser tests import this module directly).

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
const UNKNOWN = '—';

function isNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

/** 1234567 -> "1.2 MB" (SI units, as browsers and file managers show them). */
export function formatBytes(bytes) {
  if (!isNumber(bytes) || bytes < 0) return UNKNOWN;
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  let text = value < 100 ? value.toFixed(1) : String(Math.round(value));
  if (Number(text) >= 1000 && unit < BYTE_UNITS.length - 1) {
    // 999.96 kB rounds to "1000 kB": say "1.0 MB" instead.
    unit += 1;
    text = (Number(text) / 1000).toFixed(1);
  }
  return `${text} ${BYTE_UNITS[unit]}`;
}

/** Bytes per second -> "1.2 MB/s". */
export function formatRate(bytesPerSecond) {
  if (!isNumber(bytesPerSecond) || bytesPerSecond < 0) return UNKNOWN;
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** A length of time in seconds -> "45 s", "3 min", "2 h 5 min", "3 d 4 h". */
export function formatDuration(seconds) {
  if (!isNumber(seconds) || seconds < 0) return UNKNOWN;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 24 * 60) {
    const rest = minutes % 60;
    return rest ? `${Math.floor(minutes / 60)} h ${rest} min` : `${minutes / 60} h`;
  }
  const hours = Math.round(s / 3600);
  const rest = hours % 24;
  return rest ? `${Math.floor(hours / 24)} d ${rest} h` : `${hours / 24} d`;
}

/** Estimated time left; null, negative or absurd values mean "unknown". */
export function formatEta(seconds) {
  if (!isNumber(seconds) || seconds < 0 || seconds > 365 * 86400) return UNKNOWN;
  return formatDuration(seconds);
}

/** A media position in seconds -> "3:05" or "1:02:03". */
export function formatClock(seconds) {
  if (!isNumber(seconds) || seconds < 0) return UNKNOWN;
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** Percent 0..100 -> "42.3%"; never shows 100% before it is really 100. */
export function formatPercent(percent) {
  if (!isNumber(percent)) return UNKNOWN;
  const clamped = Math.min(100, Math.max(0, percent));
  const floored = Math.floor(clamped * 10) / 10;
  return `${Number.isInteger(floored) ? floored : floored.toFixed(1)}%`;
}

/**
 * A timestamp from the API -> milliseconds since the epoch, or null.
 * Accepts Unix seconds (float), Unix milliseconds, or an ISO 8601 string.
 */
export function toMillis(value) {
  if (isNumber(value)) return value < 1e11 ? value * 1000 : value;
  if (typeof value === 'string' && value) {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

/** A past timestamp -> "just now", "3 min ago", "5 h ago", "2 d ago", or a date. */
export function formatAgo(value, now = Date.now()) {
  const ms = toMillis(value);
  if (ms === null) return UNKNOWN;
  const seconds = Math.max(0, (now - ms) / 1000);
  if (seconds < 45) return 'just now';
  if (seconds < 90 * 60) return `${Math.max(1, Math.round(seconds / 60))} min ago`;
  if (seconds < 24 * 3600) return `${Math.round(seconds / 3600)} h ago`;
  if (seconds < 7 * 86400) return `${Math.round(seconds / 86400)} d ago`;
  return new Date(ms).toLocaleDateString();
}

/** A timestamp -> a full local date and time, for title attributes. */
export function formatDateTime(value) {
  const ms = toMillis(value);
  return ms === null ? '' : new Date(ms).toLocaleString();
}

export const STATES = ['waiting', 'downloading', 'completed', 'transcoding', 'playable', 'failed'];

const STATE_LABELS = {
  waiting: 'Waiting',
  downloading: 'Downloading',
  completed: 'Completed',
  transcoding: 'Transcoding',
  playable: 'Playable',
  failed: 'Failed',
};

/** The badge text for a task state. */
export function stateLabel(state) {
  return STATE_LABELS[state] ?? String(state ?? 'unknown');
}

/** A sentence describing what the task is doing, for screen readers and the details line. */
export function stateDescription(task) {
  switch (task.state) {
    case 'waiting':
      return 'Waiting for a worker';
    case 'downloading':
      return task.phase === 'metadata' ? 'Fetching metadata from peers' : 'Downloading data';
    case 'completed':
      return 'Download complete, preparing video';
    case 'transcoding':
      return 'Making the video streamable';
    case 'playable':
      return 'Ready to play';
    case 'failed':
      return 'Failed';
    default:
      return stateLabel(task.state);
  }
}

/** The last part of a path inside a torrent: "Show/S01/e01.mkv" -> "e01.mkv". */
export function baseName(path) {
  const parts = String(path ?? '').split(/[\\/]/);
  return parts[parts.length - 1] || String(path ?? '');
}

/** The dn= display name of a magnet link, or ''. */
export function magnetDisplayName(magnet) {
  if (typeof magnet !== 'string') return '';
  const query = magnet.indexOf('?');
  if (query < 0) return '';
  try {
    return new URLSearchParams(magnet.slice(query + 1)).get('dn') ?? '';
  } catch {
    return '';
  }
}

/** What to call a task: its name, else the magnet's dn, else the info hash. */
export function taskTitle(task) {
  return task.name || magnetDisplayName(task.magnet) || task.info_hash || `Task ${task.id}`;
}


/**
 * True when `incoming` is an older copy of the task `current`: an answer that left A before
 * an event the page already applied. Compares updated_at, then the progress's updated_at.
 */
export function isStale(incoming, current) {
  const pairs = [
    [incoming.updated_at, current.updated_at],
    [incoming.progress?.updated_at, current.progress?.updated_at],
  ];
  for (const [x, y] of pairs) {
    const a = toMillis(x);
    const b = toMillis(y);
    if (a === null || b === null || a === b) continue;
    return a < b;
  }
  return false;
}
