// Player controls: play/pause, position and duration, a seek bar over the whole video, mute,
// volume and full screen. The video element may hold only part of the video (a rendition that
// starts at a seek target), so the controls speak absolute media time through callbacks:
//
//   const controls = new PlayerControls(document.getElementById('controls'), video, {
//     position: () => start + video.currentTime,   // seconds into the whole video
//     duration: () => 80,                          // the whole video, NaN while unknown
//     available: () => [{ start: 0, end: 12 }],    // what can play without waiting for B
//     seek: (seconds) => player.seekTo(seconds),   // the player decides how to get there
//   });
//
// The seek bar is an <input type=range>, so mouse, touch and keyboard (arrows, Page Up/Down,
// Home/End) all work and screen readers announce "1:02 of 1:20". Keys on the page: Space or K
// play/pause, ←/→ 5 s back/forward, M mute, F full screen.

import { formatClock } from './format.js';

const STEP_SECONDS = 5; // ←/→ on the page
const VOLUME_KEY = 'torrentm3u8.volume';

function isNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

export class PlayerControls {
  constructor(root, video, { position, duration, available, seek }) {
    this.root = root;
    this.video = video;
    this.position = position;
    this.duration = duration;
    this.available = available;
    this.seek = seek;
    this.dragging = false;
    this.playButton = root.querySelector('[data-control="play"]');
    this.clock = root.querySelector('[data-control="clock"]');
    this.bar = root.querySelector('[data-control="seek"]');
    this.muteButton = root.querySelector('[data-control="mute"]');
    this.volume = root.querySelector('[data-control="volume"]');
    this.fullscreenButton = root.querySelector('[data-control="fullscreen"]');
    this._restoreVolume();
    this._wire();
    this.render();
  }

  _restoreVolume() {
    try {
      const saved = Number.parseFloat(localStorage.getItem(VOLUME_KEY) ?? '');
      if (isNumber(saved) && saved >= 0 && saved <= 1) this.video.volume = saved;
    } catch {
      // Storage refused (private mode): the default volume it is.
    }
  }

  _wire() {
    const { video } = this;
    this.playButton.addEventListener('click', () => this.togglePlay());
    video.addEventListener('click', () => this.togglePlay());
    this.bar.addEventListener('input', () => {
      this.dragging = true;
      this._renderClock(Number(this.bar.value));
    });
    this.bar.addEventListener('change', () => {
      this.dragging = false;
      this.seek(Number(this.bar.value));
    });
    this.muteButton.addEventListener('click', () => {
      video.muted = !video.muted;
    });
    this.volume.addEventListener('input', () => {
      video.volume = Number(this.volume.value);
      video.muted = video.volume === 0;
      try {
        localStorage.setItem(VOLUME_KEY, String(video.volume));
      } catch {
        // Not remembered; nothing else to do.
      }
    });
    this.fullscreenButton.addEventListener('click', () => this.toggleFullscreen());
    this.fullscreenButton.hidden = !document.fullscreenEnabled;
    for (const name of ['play', 'pause', 'ended', 'timeupdate', 'durationchange', 'progress',
      'volumechange', 'loadedmetadata', 'emptied']) {
      video.addEventListener(name, () => this.render());
    }
    document.addEventListener('keydown', (event) => this._onKey(event));
  }

  _onKey(event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    // Keys typed into a control belong to it (the range handles its own arrows).
    if (target.closest?.('input, textarea, select, [contenteditable="true"]')) return;
    const onButton = target.closest?.('button, a');
    const key = event.key.toLowerCase();
    if ((key === ' ' && !onButton) || key === 'k') this.togglePlay();
    else if (key === 'arrowleft') this.seek(Math.max(0, this.position() - STEP_SECONDS));
    else if (key === 'arrowright') this.seek(this.position() + STEP_SECONDS);
    else if (key === 'm') this.video.muted = !this.video.muted;
    else if (key === 'f' && document.fullscreenEnabled) this.toggleFullscreen();
    else return;
    event.preventDefault();
  }

  togglePlay() {
    const { video } = this;
    if (video.paused || video.ended) video.play().catch(() => {});
    else video.pause();
  }

  toggleFullscreen() {
    const box = this.video.closest('.video-box') ?? this.video;
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else box.requestFullscreen?.().catch(() => {});
  }

  // The end of the bar: the whole video when known, else what is available so far.
  _total() {
    const total = this.duration();
    if (isNumber(total) && total > 0) return total;
    const ends = this.available().map((range) => range.end);
    return Math.max(0, ...ends.filter(isNumber));
  }

  render() {
    const { video } = this;
    const playing = !video.paused && !video.ended;
    this.playButton.textContent = playing ? '❚❚' : '▶';
    this.playButton.setAttribute('aria-label', playing ? 'Pause' : 'Play');
    const muted = video.muted || video.volume === 0;
    this.muteButton.textContent = muted ? 'Unmute' : 'Mute';
    this.muteButton.setAttribute('aria-label', muted ? 'Unmute' : 'Mute');
    this.muteButton.setAttribute('aria-pressed', String(muted));
    if (document.activeElement !== this.volume) this.volume.value = String(video.volume);

    const total = this._total();
    this.bar.max = String(total || 0);
    this.bar.disabled = !(total > 0);
    // The bar's track shows what can play at once (downloaded and made into segments).
    const stops = this.available()
      .filter((range) => isNumber(range.start) && isNumber(range.end) && total > 0)
      .map((range) => [range.start / total, Math.min(1, range.end / total)]);
    this.bar.style.setProperty('--available', this._gradient(stops));
    if (!this.dragging) {
      const position = this.position();
      this.bar.value = String(isNumber(position) ? Math.min(position, total) : 0);
      this._renderClock(position);
    }
  }

  _renderClock(position) {
    const total = this._total();
    const now = formatClock(isNumber(position) ? position : 0);
    const known = isNumber(this.duration()) ? formatClock(total) : `${formatClock(total)}+`;
    this.clock.textContent = `${now} / ${known}`;
    this.bar.setAttribute('aria-valuetext', `${now} of ${known}`);
  }

  _gradient(stops) {
    const parts = [];
    for (const [from, to] of stops.sort((x, y) => x[0] - y[0])) {
      const a = `${(100 * from).toFixed(2)}%`;
      const b = `${(100 * to).toFixed(2)}%`;
      parts.push(`transparent ${a}`, `var(--track-ready) ${a}`, `var(--track-ready) ${b}`,
        `transparent ${b}`);
    }
    return parts.length ? `linear-gradient(to right, ${parts.join(', ')})` : 'none';
  }
}
