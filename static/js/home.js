// Home page: paste a magnet, see every task update live.

import { call, checkMagnet, Live, watchLiveStatus, watchWorkers } from './api.js';
import { isStale, taskTitle, toMillis } from './format.js';
import { showNotice, TaskCard } from './widgets.js';

const form = document.getElementById('magnet-form');
const input = document.getElementById('magnet-input');
const submit = document.getElementById('magnet-submit');
const errorBox = document.getElementById('magnet-error');
const list = document.getElementById('task-list');
const empty = document.getElementById('tasks-empty');
const loading = document.getElementById('tasks-loading');
const heading = document.getElementById('tasks-title');

const cards = new Map(); // task id -> TaskCard
let fetching = null; // {touched, removed} while a task.list call is in flight

// --- The task list ---------------------------------------------------------------------------

function addedAt(task) {
  return toMillis(task.added_at) ?? 0;
}

function insertSorted(card) {
  const added = addedAt(card.task);
  for (const row of list.children) {
    const other = cards.get(row.dataset.taskId);
    if (other && addedAt(other.task) < added) {
      list.insertBefore(card.element, row);
      return;
    }
  }
  list.append(card.element);
}

function upsert(task) {
  if (!task || task.id === undefined || task.id === null) return;
  const id = String(task.id);
  fetching?.touched.add(id);
  const card = cards.get(id);
  if (card) {
    if (isStale(task, card.task)) return;
    announceChange(card.task, task);
    card.update(task);
  } else {
    const created = new TaskCard({ onRemoved: drop });
    created.update(task);
    cards.set(id, created);
    insertSorted(created);
  }
  refreshEmpty();
}

/** Says out loud (in the #notice live region) when a task becomes playable or fails. */
function announceChange(before, after) {
  if (before.state === after.state) return;
  if (after.state === 'playable') showNotice(`“${taskTitle(after)}” is ready to play.`);
  if (after.state === 'failed') {
    showNotice(`“${taskTitle(after)}” failed: ${after.error || 'unknown reason'}`, 'error');
  }
}

function drop(id) {
  const key = String(id);
  const card = cards.get(key);
  if (!card) return;
  const hadFocus = card.element.contains(document.activeElement);
  card.element.remove();
  cards.delete(key);
  if (hadFocus) heading.focus();
  refreshEmpty();
}

function refreshEmpty() {
  empty.hidden = !loading.hidden || cards.size > 0;
}

async function loadTasks() {
  const state = { touched: new Set(), removed: new Set() };
  fetching = state;
  try {
    const result = await call('task.list');
    const tasks = Array.isArray(result) ? result : (result?.tasks ?? []);
    const ids = new Set(tasks.map((t) => String(t.id)));
    for (const task of tasks) {
      if (!state.removed.has(String(task.id))) upsert(task);
    }
    for (const id of [...cards.keys()]) {
      if (!ids.has(id) && !state.touched.has(id)) drop(id);
    }
    loading.hidden = true;
    refreshEmpty();
  } catch (err) {
    loading.textContent = `Could not load tasks: ${err.message}`;
  } finally {
    if (fetching === state) fetching = null;
  }
}

// --- The magnet form -------------------------------------------------------------------------

function setError(message) {
  errorBox.textContent = message;
  input.setAttribute('aria-invalid', message ? 'true' : 'false');
}

input.addEventListener('input', () => {
  const value = input.value.trim();
  // Say nothing while the user is still typing "magnet:?".
  const typingScheme = 'magnet:?'.startsWith(value.toLowerCase());
  setError(typingScheme ? '' : checkMagnet(value));
});

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const magnet = input.value.trim();
  const problem = checkMagnet(magnet);
  if (problem) {
    setError(problem);
    input.focus();
    return;
  }
  setError('');
  submit.disabled = true;
  submit.textContent = 'Adding…';
  try {
    const known = new Set(cards.keys()); // before the call: the event may come first
    const task = await call('task.add', { magnet });
    input.value = '';
    // The same info hash gives back the task A already has.
    const title = taskTitle(task);
    const again = known.has(String(task.id));
    upsert(task);
    showNotice(again ? `“${title}” is already in the list.` : `Added ${title}.`);
  } catch (err) {
    // A's -32602 messages ("not a magnet link: ...") are written for the user: show as is.
    setError(err.message);
    input.focus();
  } finally {
    submit.disabled = false;
    submit.textContent = 'Add';
  }
});

// --- Live updates ----------------------------------------------------------------------------

const live = new Live();
watchLiveStatus(live, document.getElementById('live-status'));
const refreshWorkers = watchWorkers(live, document.getElementById('worker-indicator'));
live.addEventListener('open', loadTasks);
live.addEventListener('task.updated', (event) => upsert(event.detail.task));
live.addEventListener('task.removed', (event) => {
  fetching?.removed.add(String(event.detail.id));
  drop(event.detail.id);
});
live.start();
loadTasks();
refreshWorkers();
