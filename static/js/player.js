// Player: hls.js fed over a WebRTC data channel from the worker (P2PClient + makeP2PLoader).
// Signaling (stream.open/offer/candidate/close) goes over the /ws websocket, so A ties the
// stream session to this page and ends it when the page goes away.
//
// While the video downloads, its rendition grows from 0. A seek past what it lists asks the
// worker (stream.seek) for a rendition that starts there; the player then plays that one over
// the same data channel. So the video element holds one rendition at a time, and
// `rendition.start + video.currentTime` is the position in the whole video (the controls
// show that; `video.dataset.start` holds the start for scripts and tests).

import { call, ErrorCode, Live, watchLiveStatus } from './api.js';
import { baseName, formatClock, formatPercent, isStale, taskTitle } from './format.js';
import { PlayerControls } from './controls.js';
import { makeP2PLoader, STREAM_PREFIX } from './hls-loader.js';
import { P2PClient } from './p2p.js';
import { taskHref } from './widgets.js';

const MAX_NETWORK_RECOVERIES = 3; // hls.startLoad() attempts before giving up
const MAX_MEDIA_RECOVERIES = 2; // hls.recoverMediaError() attempts before giving up
const SEEK_END_MARGIN = 0.5; // seconds: a seek to the very end lands this much before it

const params = new URLSearchParams(location.search);
const taskId = params.get('id');
const fileIndex = Number.parseInt(params.get('file') ?? '0', 10);

const video = document.getElementById('video');
const titleEl = document.getElementById('player-title');
const subtitle = document.getElementById('player-subtitle');
const problem = document.getElementById('player-problem');
const connection = document.getElementById('connection');
const connectionText = document.getElementById('connection-text');
const retryButton = document.getElementById('retry-button');
const startButton = document.getElementById('start-button');
const buffering = document.getElementById('buffering');
const available = document.getElementById('available');
const seeking = document.getElementById('seeking');

let task = null;
let stream = null; // the current attempt: {client, hls, sessionId, rendition, recoveries}
let resumeAt = 0; // seconds into the whole video: where a retry picks up
let failed = false; // the last attempt failed: wait for Retry
let seekSerial = 0; // the latest seek wins; an older answer from the worker is dropped

function setConnection(state, text, { retry = false } = {}) {
  connection.dataset.state = state;
  connectionText.textContent = text;
  retryButton.hidden = !retry;
}

function hlsEntry() {
  return (task?.hls ?? []).find((h) => h.file_index === fileIndex) ?? null;
}

function mainRendition() {
  return { playlist: baseName(hlsEntry()?.playlist || 'index.m3u8'), start: 0 };
}

// Seconds into the whole video.
function position() {
  if (!stream?.rendition) return resumeAt;
  return stream.rendition.start + (Number.isFinite(video.currentTime) ? video.currentTime : 0);
}

// The whole video's duration (NaN while unknown): a growing rendition lists less.
function mediaDuration() {
  const entry = hlsEntry();
  if (!entry) return NaN;
  if (Number.isFinite(entry.media_duration) && entry.media_duration > 0) {
    return entry.media_duration;
  }
  return entry.live ? NaN : entry.duration;
}

// Seconds the loaded rendition lets the video element seek to (relative to its start).
function seekableEnd() {
  const end = video.seekable.length ? video.seekable.end(video.seekable.length - 1) : 0;
  return Number.isFinite(end) ? end : 0;
}

// What can play without waiting for the worker, in seconds into the whole video.
function availableRanges() {
  const entry = hlsEntry();
  if (!entry) return [];
  const rendition = stream?.rendition;
  let mainEnd = entry.live ? entry.duration ?? 0 : mediaDuration() || entry.duration || 0;
  if (rendition && rendition.start === 0) mainEnd = Math.max(mainEnd, seekableEnd());
  const ranges = [{ start: 0, end: mainEnd }];
  if (rendition && rendition.start > 0 && seekableEnd() > 0) {
    ranges.push({ start: rendition.start, end: rendition.start + seekableEnd() });
  }
  return ranges;
}

// --- What the page shows about the task ------------------------------------------------------

function renderTask(next) {
  if (task && isStale(next, task)) return;
  task = next;
  const file = (task.files ?? []).find((f) => f.index === fileIndex);
  const name = file ? baseName(file.path) : `File ${fileIndex}`;
  titleEl.textContent = name;
  subtitle.textContent = taskTitle(task);
  document.title = `${name} · TorrentM3U8`;
  renderAvailable();
  controls.render();
  // After a failed connection only the Retry button (or a reconnected websocket) starts again.
  if (!stream && !failed) {
    if (hlsEntry()) start();
    else showWaiting();
  }
}

function showWaiting() {
  if (task.state === 'failed') {
    setConnection('failed', `The task failed: ${task.error || 'unknown reason'}`);
    return;
  }
  // The live region says what is going on; the changing numbers go to #available (not live).
  const doing = task.state === 'transcoding' ? 'being made streamable' : 'downloading';
  setConnection('waiting', `Not ready yet: ${doing}. Playback starts by itself when it is.`);
}

function bufferedEnd() {
  const t = video.currentTime;
  for (let i = 0; i < video.buffered.length; i += 1) {
    if (video.buffered.start(i) <= t + 0.5 && t <= video.buffered.end(i)) {
      return video.buffered.end(i);
    }
  }
  return null;
}

function renderAvailable() {
  const entry = hlsEntry();
  if (!entry) {
    const transcode = (task.transcode ?? []).find((t) => t.file_index === fileIndex);
    const percent = transcode ? transcode.percent : task.progress?.percent;
    const what = transcode ? 'Prepared' : 'Downloaded';
    available.textContent = Number.isFinite(percent) ? `${what}: ${formatPercent(percent)}.` : '';
    return;
  }
  const ready = availableRanges()[0].end;
  const parts = [];
  if (entry.live) {
    const percent = task.progress?.percent;
    const downloaded = Number.isFinite(percent) ? `, ${formatPercent(percent)} downloaded` : '';
    const more = `more arrives as it downloads${downloaded}`;
    parts.push(`${formatClock(ready)} available so far (${more})`);
  } else {
    parts.push(`Whole video available: ${formatClock(ready)}`);
  }
  const start = stream?.rendition?.start ?? 0;
  if (start > 0) parts.push(`playing from ${formatClock(start)}, made on request`);
  const end = bufferedEnd();
  if (end !== null) parts.push(`buffered to ${formatClock(start + end)}`);
  available.textContent = `${parts.join(' · ')}.`;
}

// --- The stream --------------------------------------------------------------------------------

async function start() {
  if (stream || !hlsEntry()) return;
  problem.textContent = '';
  startButton.hidden = true;
  if (typeof window.Hls === 'undefined' || !window.Hls.isSupported()) {
    failed = true;
    setConnection('failed', 'This browser cannot play the stream (no Media Source Extensions).');
    return;
  }
  const attempt = {
    client: null,
    hls: null,
    rendition: null, // {playlist, start}: what the video element holds
    sessionId: null,
    openError: null, // what stream.open answered, when it failed
    network: 0, // hls.js recoveries tried (onHlsError)
    media: 0,
  };
  stream = attempt;
  setConnection('connecting', 'Connecting to the worker…');

  const signaling = {
    open: async () => {
      try {
        const opened = await live.call('stream.open', { task_id: taskId, file_index: fileIndex });
        attempt.sessionId = opened.session_id;
        return opened;
      } catch (err) {
        attempt.openError = err;
        throw err;
      }
    },
    offer: (sdp) => live.call('stream.offer', { session_id: attempt.sessionId, sdp }),
    candidate: (candidate) =>
      live.call('stream.candidate', { session_id: attempt.sessionId, candidate }),
    close: () =>
      attempt.sessionId ? live.call('stream.close', { session_id: attempt.sessionId }) : null,
  };
  const client = new P2PClient(signaling);
  attempt.client = client;
  client.addEventListener('statechange', (event) => {
    if (stream !== attempt) return;
    const { state, reason } = event.detail;
    if (state === 'connected') {
      setConnection('connected', 'Connected to the worker (peer to peer)');
    } else if (state === 'failed' && attempt.openError?.code === ErrorCode.NOT_PLAYABLE) {
      stop(); // A has no rendition for this file (any more): wait for task.updated.
      showWaiting();
    } else if (state === 'failed') {
      fail(reason || 'the connection to the worker failed');
    }
  });

  // A retry resumes where it was; past what the growing rendition lists, that is a seek.
  const target = resumeAt;
  const inMain = !hlsEntry().live || target < (hlsEntry().duration ?? 0);
  loadRendition(attempt, mainRendition(), inMain ? target : 0, { autoplay: true });

  try {
    await client.connect();
  } catch (err) {
    // Normally reported through 'statechange' already; this catches anything else.
    if (stream === attempt) fail(client.reason || err.message);
    return;
  }
  if (!inMain && stream === attempt) seekTo(target);
}

// Play `rendition` ({playlist, start}) from `at` seconds into the whole video, over the
// attempt's data channel: a new hls.js instance on the same video element and connection.
function loadRendition(attempt, rendition, at, { autoplay }) {
  attempt.hls?.destroy();
  attempt.rendition = rendition;
  attempt.network = 0;
  attempt.media = 0;
  video.dataset.start = String(rendition.start);
  const startPosition = Math.max(0, at - rendition.start);
  const hls = new window.Hls({ loader: makeP2PLoader(attempt.client), startPosition });
  attempt.hls = hls;
  hls.on(window.Hls.Events.ERROR, (_event, data) => onHlsError(attempt, hls, data));
  hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
    if (stream === attempt && attempt.hls === hls && autoplay) play();
  });
  hls.attachMedia(video);
  hls.loadSource(STREAM_PREFIX + rendition.playlist);
  controls.render();
}

// Go to `target` seconds into the whole video: within the loaded rendition, a plain seek;
// within what the rendition from 0 lists, back to that one; else the worker makes one that
// starts there (a few seconds: it downloads that part first).
async function seekTo(target) {
  const total = mediaDuration();
  let at = Math.max(0, Number.isFinite(target) ? target : 0);
  if (Number.isFinite(total)) at = Math.min(at, Math.max(0, total - SEEK_END_MARGIN));
  const attempt = stream;
  seekSerial += 1;
  const serial = seekSerial;
  if (!attempt?.rendition) {
    resumeAt = at; // not streaming: the next start begins there
    controls.render();
    return;
  }
  const { rendition } = attempt;
  if (at >= rendition.start && at <= rendition.start + seekableEnd()) {
    video.currentTime = at - rendition.start;
    return;
  }
  const entry = hlsEntry();
  const autoplay = !video.paused || video.ended;
  if (entry && (!entry.live || at < (entry.duration ?? 0))) {
    loadRendition(attempt, mainRendition(), at, { autoplay });
    return;
  }
  problem.textContent = '';
  buffering.hidden = false;
  seeking.textContent = `Asking the worker for ${formatClock(at)}…`;
  seeking.hidden = false;
  try {
    const answer = await live.call('stream.seek', { session_id: attempt.sessionId, position: at });
    if (stream !== attempt || serial !== seekSerial) return;
    loadRendition(attempt, { playlist: answer.playlist, start: answer.start }, at, {
      autoplay: true,
    });
  } catch (err) {
    if (stream !== attempt || serial !== seekSerial) return;
    buffering.hidden = true;
    problem.textContent = `Could not jump to ${formatClock(at)}: ${err.message}`;
  } finally {
    if (serial === seekSerial) seeking.hidden = true;
  }
}

function onHlsError(attempt, hls, data) {
  if (stream !== attempt || attempt.hls !== hls || !data.fatal) return;
  const { ErrorTypes } = window.Hls;
  if (attempt.client.state === 'failed') {
    fail(attempt.client.reason);
  } else if (data.type === ErrorTypes.NETWORK_ERROR && attempt.network < MAX_NETWORK_RECOVERIES) {
    attempt.network += 1;
    attempt.hls.startLoad();
  } else if (data.type === ErrorTypes.MEDIA_ERROR && attempt.media < MAX_MEDIA_RECOVERIES) {
    attempt.media += 1;
    attempt.hls.recoverMediaError();
  } else {
    const why = data.response?.text || data.error?.message || data.details;
    fail(`the video could not be loaded (${why})`);
  }
}

async function play() {
  try {
    await video.play();
  } catch (err) {
    // Autoplay refused (no user gesture yet): one click on the button starts it.
    if (err.name === 'NotAllowedError') startButton.hidden = false;
  }
}

function stop() {
  const attempt = stream;
  if (!attempt) return;
  if (attempt.rendition && Number.isFinite(video.currentTime) && video.currentTime > 0) {
    resumeAt = position();
  }
  stream = null;
  attempt.hls?.destroy();
  attempt.client?.close();
  buffering.hidden = true;
}

function fail(reason) {
  stop();
  failed = true;
  setConnection('failed', `Connection failed: ${reason}`, { retry: true });
}

function retry() {
  stop();
  failed = false;
  problem.textContent = '';
  if (hlsEntry()) start();
  else showWaiting();
}

retryButton.addEventListener('click', retry);
startButton.addEventListener('click', () => {
  startButton.hidden = true;
  if (stream) play();
  else retry();
});

// --- Video element feedback --------------------------------------------------------------------

for (const name of ['waiting', 'stalled', 'seeking']) {
  video.addEventListener(name, () => {
    if (stream && !video.paused) buffering.hidden = false;
  });
}
for (const name of ['playing', 'pause', 'ended', 'canplaythrough', 'seeked']) {
  video.addEventListener(name, () => {
    if (name !== 'seeked' || video.readyState >= 3) buffering.hidden = true;
  });
}
video.addEventListener('playing', () => {
  startButton.hidden = true;
});
for (const name of ['progress', 'timeupdate', 'durationchange']) {
  video.addEventListener(name, renderAvailable);
}

const controls = new PlayerControls(document.getElementById('controls'), video, {
  position,
  duration: mediaDuration,
  available: availableRanges,
  seek: seekTo,
});

// --- Start ---------------------------------------------------------------------------------

const live = new Live();

async function load() {
  try {
    renderTask(await call('task.get', { id: taskId }));
  } catch (err) {
    titleEl.textContent = err.code === ErrorCode.UNKNOWN_TASK ? 'Task not found' : 'Cannot play';
    problem.textContent =
      err.code === ErrorCode.UNKNOWN_TASK
        ? `There is no task with id ${taskId}. It may have been removed.`
        : `Could not load the task: ${err.message}`;
    setConnection('failed', 'Nothing to play');
  }
}

if (!taskId || !Number.isInteger(fileIndex) || fileIndex < 0) {
  titleEl.textContent = 'Nothing to play';
  problem.textContent = 'This link has no task id or file number. Open a video from its task.';
} else {
  document.getElementById('back-link').href = taskHref(taskId);
  watchLiveStatus(live, document.getElementById('live-status'));
  let opened = false;
  live.addEventListener('open', () => {
    // A ends a stream session when its websocket closes: after a reconnect, resume the stream
    // where it was instead of waiting for it to fail.
    if (opened && (stream || failed)) retry();
    opened = true;
    load();
  });
  live.addEventListener('task.updated', (event) => {
    if (event.detail.task && String(event.detail.task.id) === taskId) renderTask(event.detail.task);
  });
  live.addEventListener('task.removed', (event) => {
    if (String(event.detail.id) !== taskId) return;
    stop();
    problem.textContent = 'This task was removed.';
    setConnection('closed', 'Stream ended');
  });
  live.addEventListener('stream.candidate', (event) => {
    const { session_id: sessionId, candidate } = event.detail;
    // B normally puts its candidates in the answer; a trickled one goes straight to the peer.
    if (stream && sessionId === stream.sessionId && candidate && stream.client.pc) {
      stream.client.pc.addIceCandidate(candidate).catch(() => {});
    }
  });
  window.addEventListener('pagehide', stop);
  live.start();
}
