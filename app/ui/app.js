// The page: routing (/ui, /ui/task/{identifier}), the key prompt, the upload form, the task list.
import { api, clock, el, getKey, onUnauthorized, setKey, stageText, unfinished, upload } from './api.js';
import { keepLocalAudio, leaveTask, showTask } from './task.js';

const $ = (selector) => document.querySelector(selector);
const views = { key: $('#key-view'), home: $('#home-view'), task: $('#task-view') };
const PAGE = 20;
let config = { auth: false, languages: {} };
let picked = null;
let offset = 0;
let listTimer = 0;
let modelsLoaded = false;

function show(name) {
  for (const [view, node] of Object.entries(views)) node.hidden = view !== name;
}

export function navigate(path) {
  history.pushState(null, '', path);
  route();
}

function route() {
  clearTimeout(listTimer);
  leaveTask();
  $('#task-list').replaceChildren();
  $('#forget-key').hidden = !getKey();
  if (config.auth && !getKey()) return askKey();
  const match = location.pathname.match(/^\/ui\/task\/([^/]+)/);
  if (match) {
    show('task');
    showTask(decodeURIComponent(match[1]), navigate);
  } else {
    show('home');
    offset = Math.max(0, (Number(new URLSearchParams(location.search).get('page')) - 1) * PAGE || 0);
    loadModels();
    refreshList();
  }
}

// key

function askKey(message = '') {
  show('key');
  $('#forget-key').hidden = true;
  $('#key-error').textContent = message;
  $('[data-testid=api-key-input]').focus();
}

$('#key-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  setKey($('[data-testid=api-key-input]').value.trim());
  try {
    await api('/task/all?limit=1');
  } catch (err) {
    setKey('');
    return askKey(err.message);
  }
  $('[data-testid=api-key-input]').value = '';
  route();
});
$('#forget-key').addEventListener('click', () => {
  setKey('');
  route();
});
onUnauthorized(() => {
  setKey('');
  askKey('That API key was not accepted: enter a valid one.');
});

// upload

const input = $('[data-testid=upload-input]');
function pick(file) {
  picked = file || null;
  $('#file-name').textContent = picked ? `${picked.name} · ${(picked.size / 1e6).toFixed(1)} MB` : '';
  if (picked) $('#url').value = '';
}
input.addEventListener('change', () => pick(input.files[0]));
$('#url').addEventListener('input', () => {
  if ($('#url').value) {
    input.value = '';
    pick(null);
  }
});
window.addEventListener('dragover', (e) => {
  e.preventDefault();
  $('#drop').classList.toggle('over', !views.home.hidden);
});
window.addEventListener('dragleave', (e) => e.relatedTarget || $('#drop').classList.remove('over'));
window.addEventListener('drop', (e) => {
  e.preventDefault(); // a file dropped anywhere is picked, never opened in place of the page
  $('#drop').classList.remove('over');
  if (!views.home.hidden && e.dataTransfer.files.length) pick(e.dataTransfer.files[0]);
});

function uploadStatus(message, error = false) {
  $('#upload-status').textContent = message;
  $('#upload-status').classList.toggle('error', error);
}

$('#upload-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const url = $('#url').value.trim();
  if (!picked && !url) return uploadStatus('Choose or drop a file, or give a URL.', true);
  const query = new URLSearchParams({ language: $('#language').value.trim().toLowerCase() || 'auto' });
  if ($('#model').value) query.set('model', $('#model').value);
  for (const name of ['num_speakers', 'min_speakers', 'max_speakers']) {
    const value = $(`#${name.replace('_', '-')}`).value;
    if (value) query.set(name, value);
  }
  query.set('align', $('#align').checked);
  query.set('diarize', $('#diarize').checked);
  const form = new FormData();
  form.append(picked ? 'file' : 'url', picked || url);
  const bar = $('#upload-progress');
  const submit = $('[data-testid=submit]');
  bar.hidden = false;
  bar.value = 0;
  submit.disabled = true;
  uploadStatus(picked ? 'Uploading…' : 'Sending…');
  try {
    const path = picked ? '/speech-to-text' : '/speech-to-text-url';
    const { identifier } = await upload(`${path}?${query}`, form, (done) => {
      bar.value = done * 100;
      uploadStatus(`Uploading… ${Math.round(done * 100)} %`);
    });
    if (picked) keepLocalAudio(identifier, picked);
    input.value = '';
    $('#url').value = '';
    pick(null);
    uploadStatus('');
    navigate(`/ui/task/${identifier}`);
  } catch (err) {
    uploadStatus(err.message, true);
  } finally {
    bar.hidden = true;
    submit.disabled = false;
  }
});

async function loadModels() {
  if (modelsLoaded) return;
  try {
    const { default: fallback, models } = await api('/models');
    const options = models.filter((m) => m.available).map((m) => el('option', { value: m.name }, m.name));
    $('#model').replaceChildren(el('option', { value: '' }, `${fallback} (default)`), ...options);
    modelsLoaded = true;
  } catch {
    // the default model still works; the list comes back on the next visit
  }
}

// task list

async function refreshList() {
  clearTimeout(listTimer);
  let data;
  try {
    data = await api(`/task/all?limit=${PAGE}&offset=${offset}`);
    $('#list-error').textContent = '';
  } catch (err) {
    $('#list-error').textContent = err.message;
    return;
  }
  if (views.home.hidden) return;
  $('#task-list').replaceChildren(...data.tasks.map(row));
  $('#list-empty').hidden = data.tasks.length > 0;
  $('#tasks-total').textContent = data.total ? `(${data.total})` : '';
  $('#page-info').textContent = data.total ? `${offset + 1}–${offset + data.tasks.length} of ${data.total}` : '';
  $('#newer').disabled = offset === 0;
  $('#older').disabled = offset + PAGE >= data.total;
  if (data.tasks.some((t) => unfinished(t.status))) listTimer = setTimeout(refreshList, 2000);
}

function row(task) {
  const facts = [
    task.audio_duration != null && clock(task.audio_duration),
    task.language,
    task.speakers && `${task.speakers} speaker${task.speakers === 1 ? '' : 's'}`,
    task.created_at && new Date(task.created_at).toLocaleString(),
  ].filter(Boolean);
  const act = (label, method, path) =>
    el('button', { type: 'button', 'data-method': method, 'data-path': path }, label);
  const id = encodeURIComponent(task.identifier);
  return el(
    'li',
    { class: 'task-row', 'data-testid': 'task-row', 'data-identifier': task.identifier },
    el('a', { href: `/ui/task/${id}`, 'data-link': true, class: 'name' }, task.file_name || task.url || task.identifier),
    el('span', { class: `status ${task.status}`, 'data-testid': 'task-status', title: task.error }, task.status),
    el('span', { class: 'muted' }, stageText(task.status, task.stage, task.progress)),
    el('span', { class: 'facts muted' }, facts.join(' · ')),
    el('span', { class: 'actions' },
      unfinished(task.status) && act('Cancel', 'POST', `/task/${id}/cancel`),
      act('Delete', 'DELETE', `/task/${id}`)),
  );
}

$('#task-list').addEventListener('click', async (e) => {
  const button = e.target.closest('button[data-method]');
  if (button) {
    button.disabled = true;
    try {
      await api(button.dataset.path, { method: button.dataset.method });
    } catch (err) {
      $('#list-error').textContent = err.message;
    }
    return refreshList();
  }
  const item = e.target.closest('[data-testid=task-row]');
  if (item && !e.target.closest('a')) navigate(item.querySelector('a').getAttribute('href'));
});

function page(step) {
  offset = Math.max(0, offset + step * PAGE);
  history.replaceState(null, '', offset ? `/ui?page=${offset / PAGE + 1}` : '/ui');
  refreshList();
}
$('#newer').addEventListener('click', () => page(-1));
$('#older').addEventListener('click', () => page(1));

// links inside the page change the view without loading it again
document.addEventListener('click', (e) => {
  const link = e.target.closest('a[data-link]');
  if (!link || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(link.getAttribute('href'));
});
window.addEventListener('popstate', route);

async function start() {
  try {
    config = await api('/ui/config.json');
  } catch (err) {
    $('#list-error').textContent = err.message;
  }
  $('#languages').append(...Object.entries(config.languages).map(([code, name]) => el('option', { value: code }, name)));
  route();
}
start();
