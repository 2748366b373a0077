// Task view: one task, its files, a play button per playable video, live updates.

import { call, ErrorCode, Live, watchLiveStatus, watchWorkers } from './api.js';
import { formatBytes, formatDateTime, formatPercent, isStale, taskTitle } from './format.js';
import { el, hiddenText, playerHref, playIcon, TaskCard, updateProgress } from './widgets.js';

const taskId = new URLSearchParams(location.search).get('id');
const title = document.getElementById('task-title');
const problem = document.getElementById('task-problem');
const body = document.getElementById('task-body');
const filesCard = document.getElementById('files-card');
const filesEmpty = document.getElementById('files-empty');
const fileRows = document.getElementById('file-rows');
const filesMore = document.getElementById('files-more');
const details = document.getElementById('details');

const card = new TaskCard({ tag: 'div', withTitle: false, withPlay: false, onRemoved: removed });
document.getElementById('task-card').replaceWith(card.element);
const rows = new Map(); // file index -> {row, action, key}
let gone = false;

function showProblem(message) {
  body.hidden = true;
  problem.textContent = message;
}

function removed() {
  gone = true;
  title.textContent = 'Task removed';
  document.title = 'Task removed · TorrentM3U8';
  showProblem('This task was removed. Go back to all tasks to add another one.');
  title.focus();
}

function render(task) {
  if (gone || (card.task && isStale(task, card.task))) return;
  const name = taskTitle(task);
  title.textContent = name;
  document.title = `${name} · TorrentM3U8`;
  problem.textContent = '';
  body.hidden = false;
  card.update(task);
  renderFiles(task);
  renderDetails(task);
}

function fileAction(task, file) {
  const hls = (task.hls ?? []).find((h) => h.file_index === file.index);
  if (hls) {
    const label = hls.live ? 'Play (while downloading)' : 'Play';
    return {
      key: `play:${hls.live ? 1 : 0}`,
      build: () =>
        el(
          'a',
          {
            class: 'button primary',
            href: playerHref(task.id, file.index),
            dataset: { testid: 'play-button', fileIndex: file.index },
          },
          playIcon(),
          label,
          hiddenText(` ${file.path}`),
        ),
    };
  }
  const transcode = (task.transcode ?? []).find((t) => t.file_index === file.index);
  if (transcode) {
    return {
      key: 'transcode',
      build: () => {
        const progress = el('progress', {
          max: 100,
          'aria-label': `Preparing ${file.path} for streaming`,
        });
        const label = el('span', { class: 'percent' });
        return el(
          'span',
          { class: 'file-progress', dataset: { testid: 'transcode-progress' } },
          progress,
          label,
        );
      },
      refresh: (node) => {
        const bar = node.querySelector('progress');
        updateProgress(bar, node.querySelector('.percent'), transcode.percent);
      },
    };
  }
  if (!file.is_video) return { key: 'none', build: () => '—' };
  const text = task.state === 'failed' ? 'Not playable' : 'Not ready yet';
  return { key: `text:${text}`, build: () => el('span', { class: 'empty' }, text) };
}

function renderFiles(task) {
  const files = task.files ?? [];
  filesCard.hidden = files.length === 0;
  filesEmpty.hidden = files.length > 0;
  // A task lists its first files and every video; task.files pages through the rest.
  const more = (task.file_count ?? files.length) - files.length;
  filesMore.hidden = more <= 0;
  filesMore.textContent =
    more > 0 ? `… and ${more.toLocaleString('en')} more files, not listed here.` : '';
  const seen = new Set();
  for (const file of files) {
    seen.add(file.index);
    let entry = rows.get(file.index);
    if (!entry) {
      const action = el('td', { class: 'action' });
      const row = el(
        'tr',
        {
          dataset: {
            testid: 'file-row',
            fileIndex: file.index,
            video: String(Boolean(file.is_video)),
          },
        },
        el('td', { class: 'path' }, file.path),
        el('td', { class: 'size' }, formatBytes(file.size)),
        el('td', { class: 'type' }, file.is_video ? 'Video' : 'Other'),
        action,
      );
      entry = { row, action, key: null };
      rows.set(file.index, entry);
      fileRows.append(row);
    }
    const action = fileAction(task, file);
    if (entry.key !== action.key) {
      entry.key = action.key;
      entry.action.replaceChildren(action.build());
    }
    action.refresh?.(entry.action.firstChild);
  }
  for (const [index, entry] of rows) {
    if (!seen.has(index)) {
      entry.row.remove();
      rows.delete(index);
    }
  }
}

function renderDetails(task) {
  const items = [
    ['Info hash', task.info_hash || '—'],
    ['State', task.state + (task.phase ? ` (${task.phase})` : '')],
    ['Added', formatDateTime(task.added_at) || '—'],
    ['Updated', formatDateTime(task.updated_at) || '—'],
    ['Worker', task.worker_id || 'none yet'],
    ['Trackers', String((task.trackers ?? []).length)],
    ['Upload speed', task.progress ? `${formatBytes(task.progress.upload_rate ?? 0)}/s` : '—'],
  ];
  for (const t of task.transcode ?? []) {
    items.push([`Transcoding file ${t.file_index}`, formatPercent(t.percent)]);
  }
  details.replaceChildren(...items.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

async function load() {
  if (gone) return;
  try {
    render(await call('task.get', { id: taskId }));
  } catch (err) {
    if (err.code === ErrorCode.UNKNOWN_TASK) {
      title.textContent = 'Task not found';
      showProblem(`There is no task with id ${taskId}. It may have been removed.`);
    } else {
      showProblem(`Could not load the task: ${err.message}`);
    }
  }
}

if (!taskId) {
  title.textContent = 'No task selected';
  showProblem('This link has no task id. Open a task from the list of all tasks.');
} else {
  const live = new Live();
  watchLiveStatus(live, document.getElementById('live-status'));
  const refreshWorkers = watchWorkers(live, document.getElementById('worker-indicator'));
  live.addEventListener('open', load);
  live.addEventListener('task.updated', (event) => {
    const task = event.detail.task;
    if (task && String(task.id) === taskId) render(task);
  });
  live.addEventListener('task.removed', (event) => {
    if (String(event.detail.id) === taskId) removed();
  });
  live.start();
  load();
  refreshWorkers();
}
