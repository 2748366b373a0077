// DOM building blocks shared by the pages: el(), state badge, progress, confirmation dialog,
// notices, and TaskCard (one task's summary with its actions: used by the home list and the
// task view, so both show the same thing the same way).

import { call } from './api.js';
import {
  formatAgo,
  formatBytes,
  formatDateTime,
  formatEta,
  formatPercent,
  formatRate,
  isStale,
  stateDescription,
  stateLabel,
  taskTitle,
  toMillis,
} from './format.js';

const TIME_REFRESH_INTERVAL = 20_000; // milliseconds

/** el('a', {href: '/', class: 'x', dataset: {testid: 'y'}}, 'text', child) -> Element. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** The ▶ of play buttons, hidden from screen readers (the label says "Play"). */
export function playIcon() {
  return el('span', { 'aria-hidden': 'true' }, '▶ ');
}

/** Text only screen readers hear, e.g. the task name after a "Remove" button label. */
export function hiddenText(text) {
  return el('span', { class: 'visually-hidden' }, text);
}

/** Updates a state badge element for `task`. */
export function updateBadge(badge, task) {
  badge.dataset.state = task.state;
  badge.className = `badge badge-${task.state}`;
  const phase = task.state === 'downloading' && task.phase === 'metadata' ? ' · metadata' : '';
  badge.textContent = stateLabel(task.state) + phase;
  badge.title = stateDescription(task);
}

/** Updates a <progress> and its percent label for a value 0..100 (null: indeterminate). */
export function updateProgress(progress, label, percent) {
  if (typeof percent === 'number' && Number.isFinite(percent)) {
    progress.max = 100;
    progress.value = Math.min(100, Math.max(0, percent));
    label.textContent = formatPercent(percent);
  } else {
    progress.removeAttribute('value');
    label.textContent = '—';
  }
}

/** A <time> that keeps saying "3 min ago" correctly (see refreshTimes). */
export function agoTime(value) {
  const node = el('time', { dataset: { ago: '' } });
  setAgo(node, value);
  return node;
}

function setAgo(node, value) {
  node.dataset.value = String(value ?? '');
  const ms = toMillis(value);
  node.textContent = formatAgo(value);
  node.title = formatDateTime(value);
  node.dateTime = ms === null ? '' : new Date(ms).toISOString();
}

function refreshTimes() {
  for (const node of document.querySelectorAll('time[data-ago]')) {
    const raw = node.dataset.value;
    node.textContent = formatAgo(raw !== '' && !Number.isNaN(Number(raw)) ? Number(raw) : raw);
  }
}
setInterval(refreshTimes, TIME_REFRESH_INTERVAL);

/** Shows a short message in the page's #notice live region (kind: info | error). */
export function showNotice(text, kind = 'info') {
  const notice = document.getElementById('notice');
  if (!notice) return;
  notice.dataset.kind = kind;
  notice.textContent = text;
}

/** Asks a yes/no question in a modal <dialog>; resolves true when confirmed. */
export function confirmAction({ title, text, confirmLabel }) {
  let dialog = document.getElementById('confirm-dialog');
  if (!dialog) {
    dialog = el(
      'dialog',
      {
        id: 'confirm-dialog',
        'aria-labelledby': 'confirm-title',
        dataset: { testid: 'confirm-dialog' },
      },
      el(
        'form',
        { method: 'dialog' },
        el('h2', { id: 'confirm-title' }),
        el('p', { id: 'confirm-text' }),
        el(
          'div',
          { class: 'actions' },
          el('button', { type: 'submit', value: 'cancel', dataset: { testid: 'confirm-cancel' } }),
          el('button', {
            type: 'submit',
            value: 'ok',
            class: 'danger',
            dataset: { testid: 'confirm-ok' },
          }),
        ),
      ),
    );
    document.body.append(dialog);
  }
  dialog.querySelector('#confirm-title').textContent = title;
  dialog.querySelector('#confirm-text').textContent = text;
  dialog.querySelector('[value=cancel]').textContent = 'Cancel';
  dialog.querySelector('[value=ok]').textContent = confirmLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    dialog.querySelector('[value=cancel]').focus();
  });
}

export function playerHref(taskId, fileIndex) {
  return `/player.html?id=${encodeURIComponent(taskId)}&file=${encodeURIComponent(fileIndex)}`;
}

export function taskHref(taskId) {
  return `/task.html?id=${encodeURIComponent(taskId)}`;
}

/** The file name of the rendition of `fileIndex`, for labels. */
export function fileLabel(task, fileIndex) {
  const file = (task.files ?? []).find((f) => f.index === fileIndex);
  const path = file ? file.path : `file ${fileIndex}`;
  const parts = String(path).split('/');
  return parts[parts.length - 1];
}

function totalSize(task) {
  const total = task.progress?.total;
  if (typeof total === 'number' && total > 0) return total;
  return task.total_size ?? null;
}

function transcodePercent(task) {
  const entries = task.transcode ?? [];
  if (!entries.length) return null;
  return entries.reduce((sum, t) => sum + (t.percent ?? 0), 0) / entries.length;
}

/**
 * One task's summary: name, badge, progress, speed, peers, ETA, size, added time, error,
 * Retry, Remove and (optionally) play links. `card.update(task)` refreshes it in place so
 * keyboard focus stays where it is during live updates.
 */
export class TaskCard {
  constructor({ tag = 'li', withTitle = true, withPlay = true, onRemoved = () => {} } = {}) {
    this.task = null;
    this.withPlay = withPlay;
    this.onRemoved = onRemoved;
    const stat = (label, testid) => {
      const dd = el('dd', { dataset: { testid } });
      return [el('div', {}, el('dt', {}, label), dd), dd];
    };
    const [speedRow, speed] = stat('Speed', 'task-speed');
    const [peersRow, peers] = stat('Peers', 'task-peers');
    const [etaRow, eta] = stat('Time left', 'task-eta');
    const [sizeRow, size] = stat('Size', 'task-size');
    const [addedRow, added] = stat('Added', 'task-added');
    this.parts = {
      title: el('a', { class: 'task-name', dataset: { testid: 'task-link' } }),
      badge: el('span', { class: 'badge', dataset: { testid: 'state-badge' } }),
      progress: el('progress', { max: 100, dataset: { testid: 'task-progress' } }),
      percent: el('span', { class: 'percent', dataset: { testid: 'task-percent' } }),
      detail: el('p', { class: 'task-detail', dataset: { testid: 'task-detail' } }),
      error: el('p', { class: 'error task-error', dataset: { testid: 'task-error' } }),
      play: el('span', { class: 'play-links' }),
      retry: el('button', { type: 'button', dataset: { testid: 'retry-button' } }),
      remove: el('button', {
        type: 'button',
        class: 'danger-outline',
        dataset: { testid: 'remove-button' },
      }),
      speed,
      peers,
      eta,
      size,
      added: agoTime(null),
    };
    added.append(this.parts.added);
    const p = this.parts;
    p.retry.addEventListener('click', () => this.#retry());
    p.remove.addEventListener('click', () => this.#remove());
    this.element = el(
      tag,
      { class: 'task card', dataset: { testid: 'task-row' } },
      el('div', { class: 'task-head' }, withTitle ? p.title : null, p.badge),
      el('div', { class: 'task-progress' }, p.progress, p.percent),
      el('dl', { class: 'task-stats' }, speedRow, peersRow, etaRow, sizeRow, addedRow),
      p.detail,
      p.error,
      el('div', { class: 'task-actions' }, p.play, p.retry, p.remove),
    );
  }

  update(task) {
    if (this.task && isStale(task, this.task)) return;
    this.task = task;
    const p = this.parts;
    const title = taskTitle(task);
    const root = this.element;
    root.dataset.taskId = task.id;
    root.dataset.state = task.state;
    p.title.textContent = title;
    p.title.href = taskHref(task.id);
    updateBadge(p.badge, task);

    const progress = task.progress ?? {};
    const downloading = task.state === 'downloading';
    const metadataPending = downloading && task.phase === 'metadata';
    const done = ['completed', 'transcoding', 'playable'].includes(task.state);
    let percent = done ? 100 : (progress.percent ?? 0);
    if (metadataPending) percent = null; // size unknown yet: an indeterminate bar
    updateProgress(p.progress, p.percent, percent);
    p.progress.setAttribute('aria-label', `Download progress of ${title}`);
    p.speed.textContent = downloading ? formatRate(progress.download_rate) : '—';
    const peers = downloading && Number.isFinite(progress.peers);
    p.peers.textContent = peers ? String(progress.peers) : '—';
    p.eta.textContent = downloading && !metadataPending ? formatEta(progress.eta) : '—';
    p.size.textContent = formatBytes(totalSize(task));
    setAgo(p.added, task.added_at);

    let detail = stateDescription(task);
    const transcoding = transcodePercent(task);
    if (task.state === 'transcoding' && transcoding !== null) {
      detail += ` · ${formatPercent(transcoding)}`;
    }
    if (downloading && !metadataPending && progress.total) {
      detail += ` · ${formatBytes(progress.downloaded ?? 0)} of ${formatBytes(progress.total)}`;
    }
    const failed = task.state === 'failed';
    p.detail.textContent = failed ? '' : detail;
    p.error.textContent = failed ? task.error || 'Failed for an unknown reason' : '';
    p.error.hidden = !failed;
    p.retry.hidden = !failed;
    p.retry.replaceChildren('Retry', hiddenText(` ${title}`));
    p.remove.replaceChildren('Remove', hiddenText(` ${title}`));
    this.#updatePlay(task, title);
  }

  #updatePlay(task, title) {
    const play = this.parts.play;
    const entries = this.withPlay ? (task.hls ?? []) : [];
    const key = entries.map((h) => `${h.file_index}:${h.live ? 1 : 0}`).join(',');
    if (play.dataset.key === key) return;
    play.dataset.key = key;
    play.replaceChildren(
      ...entries.map((h) => {
        const name = entries.length > 1 ? ` ${fileLabel(task, h.file_index)}` : '';
        return el(
          'a',
          {
            class: 'button primary',
            href: playerHref(task.id, h.file_index),
            dataset: { testid: 'play-button', fileIndex: h.file_index },
          },
          playIcon(),
          `Play${name}`,
          h.live ? ' (while downloading)' : '',
          entries.length > 1 ? '' : hiddenText(` ${title}`),
        );
      }),
    );
  }

  async #retry() {
    const button = this.parts.retry;
    button.disabled = true;
    try {
      const task = await call('task.retry', { id: this.task.id });
      if (task && task.id === this.task.id && task.state) this.update(task);
      showNotice(`Retrying ${taskTitle(this.task)}`);
    } catch (err) {
      showNotice(`Could not retry: ${err.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  }

  async #remove() {
    const title = taskTitle(this.task);
    const confirmed = await confirmAction({
      title: 'Remove this task?',
      text: `“${title}” stops downloading and leaves the list. This cannot be undone.`,
      confirmLabel: 'Remove',
    });
    if (!confirmed) {
      this.parts.remove.focus();
      return;
    }
    this.parts.remove.disabled = true;
    try {
      await call('task.remove', { id: this.task.id });
      showNotice(`Removed ${title}`);
      this.onRemoved(this.task.id);
    } catch (err) {
      showNotice(`Could not remove: ${err.message}`, 'error');
      this.parts.remove.disabled = false;
    }
  }
}
