// One task: its live status, then the transcript with the player, corrections and exports.
import { api, clock, download, el, getKey, stageText, unfinished } from './api.js';

const $ = (selector) => document.querySelector(selector);
const PALETTE = ['#E69F00', '#56B4E9', '#009E73', '#F0E442', '#0072B2', '#D55E00', '#CC79A7', '#000000']; // Okabe–Ito
const LOW_SCORE = 0.5; // words the aligner is less sure of than this are marked
const FORMATS = ['srt', 'vtt', 'txt', 'json'];
const player = $('[data-testid=player]');
const transcript = $('#transcript');
const statusNode = $('#task-status');
const localAudio = new Map(); // identifier → object URL of the file uploaded from this page
let view = null; // the task shown: {id, task, segments, timeline, colours, current}
let generation = 0; // bumped on every change of view, so late answers are dropped

export const keepLocalAudio = (id, file) => localAudio.set(id, URL.createObjectURL(file));

export function showTask(id, navigate) {
  leaveTask();
  view = { id, gen: generation, navigate, colours: new Map() };
  statusNode.setAttribute('data-testid', 'task-status');
  for (const node of ['#task-title', '#task-facts', '#task-stage', '#task-error', '#task-partial', '#audio-note']) $(node).textContent = '';
  statusNode.textContent = 'loading';
  poll(view);
}

export function leaveTask() {
  generation += 1;
  if (view?.timer) clearTimeout(view.timer);
  view = null;
  statusNode.removeAttribute('data-testid'); // the list's rows have theirs
  observer.disconnect();
  transcript.replaceChildren();
  $('#legend').replaceChildren();
  $('#transcript-area').hidden = true;
  $('#search').value = '';
  player.pause();
  player.removeAttribute('src');
  player.load();
}

const current = (v) => v === view && v.gen === generation;
const path = (v, rest = '') => `/task/${encodeURIComponent(v.id)}${rest}`;

async function poll(v) {
  let task;
  try {
    task = await api(path(v));
  } catch (err) {
    if (!current(v)) return;
    statusNode.textContent = err.status === 404 ? 'not found' : 'unknown';
    $('#task-error').textContent = err.message;
    if (err.status !== 404 && err.status !== 401) v.timer = setTimeout(() => poll(v), 3000);
    return;
  }
  if (!current(v)) return;
  head(task);
  if (unfinished(task.status)) v.timer = setTimeout(() => poll(v), 1000);
  else if (task.status === 'completed') showTranscript(v, task);
}

function head(task) {
  const m = task.metadata;
  $('#task-title').textContent = m.file_name || m.url || view.id;
  const facts = [
    m.audio_duration != null && clock(m.audio_duration),
    m.language,
    m.processing?.speakers && `${m.processing.speakers} speakers`,
    m.processing?.model && `model ${m.processing.model}`,
    m.created_at && new Date(m.created_at).toLocaleString(),
  ];
  $('#task-facts').textContent = facts.filter(Boolean).join(' · ');
  statusNode.textContent = task.status;
  statusNode.className = `status ${task.status}`;
  $('#task-stage').textContent = stageText(task.status, m.stage, m.progress, m.queue_position);
  $('#task-progress').hidden = !unfinished(task.status);
  $('#task-progress').value = m.progress || 0;
  const partial = unfinished(task.status) ? m.partial_text || '' : ''; // what is heard so far
  const box = $('#task-partial');
  box.hidden = !partial;
  if (box.textContent !== partial) {
    box.textContent = partial;
    box.scrollTop = box.scrollHeight; // the newest text in view
  }
  $('#task-error').textContent = task.error || '';
  $('#cancel-task').hidden = !unfinished(task.status);
}

$('#cancel-task').addEventListener('click', () => act('POST', '/cancel'));
$('#delete-task').addEventListener('click', () => act('DELETE', ''));
async function act(method, rest) {
  const v = view;
  try {
    await api(path(v, rest), { method });
  } catch (err) {
    $('#task-error').textContent = err.message;
    return;
  }
  if (!current(v)) return;
  if (method === 'DELETE') return v.navigate('/ui');
  clearTimeout(v.timer);
  poll(v);
}

// transcript

async function showTranscript(v, task) {
  const segments = task.result?.segments;
  const stem = (task.metadata.file_name || v.id).replace(/\.[^.]+$/, '') || v.id;
  for (const format of FORMATS) {
    const link = $(`[data-testid=export-${format}]`);
    link.download = `${stem}.${format}`;
    link.hidden = format !== 'json' && !Array.isArray(segments);
  }
  exportLinks(v);
  $('#transcript-area').hidden = false;
  if (!Array.isArray(segments)) {
    transcript.replaceChildren(el('p', { class: 'muted' }, 'This result is not a transcript: export it as JSON.'));
    return;
  }
  await loadAudio(v); // first, so that a word clicked as soon as it shows can seek
  if (current(v)) build(v, segments);
}

const labelOf = (s) => s.speaker_label ?? s.speaker ?? null;

function colour(v, label) {
  if (!v.colours.has(label)) v.colours.set(label, PALETTE[v.colours.size % PALETTE.length]);
  return v.colours.get(label);
}

// Words with times everywhere: an unaligned word sits between its neighbours (text is never dropped).
function timedWords(segment) {
  const words = (segment.words || []).map((w) => ({ text: w.word, start: w.start, end: w.end, score: w.score }));
  let last = segment.start ?? 0;
  words.forEach((w, i) => {
    if (w.start == null) {
      const next = words.slice(i + 1).find((x) => x.start != null);
      w.start = last;
      w.end = next ? next.start : segment.end ?? last;
    }
    if (w.end == null) w.end = w.start;
    last = w.end;
  });
  return words;
}

function segmentData(raw, index) {
  return { index, label: labelOf(raw), name: raw.speaker ?? null, start: raw.start ?? 0, text: (raw.text || '').trim(), words: timedWords(raw) };
}

function build(v, segments) {
  v.segments = segments.map(segmentData);
  for (const s of v.segments) if (s.label) colour(v, s.label);
  observer.disconnect();
  const fragment = document.createDocumentFragment();
  for (const s of v.segments) fragment.append(segmentNode(v, s));
  transcript.replaceChildren(fragment);
  for (const node of transcript.children) observer.observe(node);
  indexWords(v);
  legend(v);
  search();
}

function indexWords(v) {
  v.timeline = v.segments.flatMap((s) => s.words.map((w, j) => ({ s: s.index, w: j, start: w.start, end: w.end })));
  v.timeline.sort((a, b) => a.start - b.start);
  v.current?.node.removeAttribute('aria-current');
  v.current = null;
  sync();
}

// One element per segment; its words become spans once it nears the screen (see `observer`).
function segmentNode(v, s) {
  return el(
    'article',
    { class: 'segment', 'data-testid': 'segment', 'data-speaker': s.label ?? '', 'data-index': s.index, style: s.label ? `--speaker: ${colour(v, s.label)}` : null },
    el('div', { class: 'segment-head' },
      s.label && el('button', { type: 'button', class: 'speaker-name', 'data-testid': 'speaker-name', 'data-label': s.label, title: 'Rename this speaker in every turn' }, s.name),
      el('button', { type: 'button', class: 'time', 'data-seek': s.start, title: 'Play from here' }, clock(s.start)),
      el('button', { type: 'button', class: 'edit', title: 'Correct the text or the speaker of this turn' }, 'Edit')),
    el('p', { class: 'text' }, s.text),
  );
}

function renderWords(index) {
  const s = view?.segments?.[index];
  if (!s || s.nodes || !s.words.length) return;
  s.nodes = s.words.map((w) => {
    const low = w.score != null && w.score < LOW_SCORE;
    const title = w.score != null ? `confidence ${w.score.toFixed(2)}` : null;
    return el('span', { class: low ? 'word low' : 'word', 'data-testid': 'word', 'data-start': w.start, 'data-end': w.end, title }, w.text);
  });
  transcript.children[index].querySelector('.text').replaceChildren(...s.nodes.flatMap((n, j) => (j ? [' ', n] : [n])));
  markHits(s, query());
}

const observer = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      renderWords(Number(entry.target.dataset.index));
    }
  },
  { rootMargin: '2000px 0px' },
);

function legend(v) {
  const names = new Map(v.segments.filter((s) => s.label).map((s) => [s.label, s.name]));
  const chips = [...names].map(([label, name]) =>
    el('span', { class: 'chip', style: `--speaker: ${colour(v, label)}`, title: label }, name));
  $('#legend').replaceChildren(...chips);
}

// player

async function loadAudio(v) {
  const local = localAudio.get(v.id);
  v.local = Boolean(local);
  if (local) return setAudio(local);
  const link = await api(path(v, '/audio-link')).catch((err) => ({ url: null, message: err.message }));
  if (!current(v)) return;
  if (link.url) return setAudio(link.url);
  player.hidden = true;
  note(`${link.message} Without it the player is off; the text is all here.`);
}

function setAudio(url) {
  player.hidden = false;
  $('#audio-note').hidden = true;
  player.src = url;
  player.playbackRate = player.defaultPlaybackRate = Number($('#speed').value);
}

function note(message) {
  $('#audio-note').textContent = message;
  $('#audio-note').hidden = false;
}

player.addEventListener('error', async () => {
  const v = view;
  if (!v || !player.getAttribute('src')) return;
  if (v.local || v.retried) return note('This browser cannot play this recording; the text is all here.');
  v.retried = true; // a signed link lasts minutes: fetch a fresh one once
  const at = player.currentTime;
  const link = await api(path(v, '/audio-link')).catch(() => ({}));
  if (!current(v) || !link.url) return note('The audio is no longer available; the text is all here.');
  setAudio(link.url);
  player.currentTime = at;
});

function seek(seconds) {
  if (!player.getAttribute('src')) return;
  player.currentTime = Math.max(0, Math.min(seconds, player.duration || seconds));
  sync();
}

// Mark the word being spoken: the one whose span holds the time, else the nearest.
function sync() {
  const v = view;
  if (!v?.timeline?.length || !player.getAttribute('src')) return;
  const t = player.currentTime + 0.001;
  const line = v.timeline;
  let [lo, hi] = [0, line.length - 1];
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (line[mid].start <= t) lo = mid;
    else hi = mid - 1;
  }
  let hit = line[lo];
  const next = line[lo + 1];
  if (next && t > hit.end && next.start - t < t - hit.end) hit = next;
  if (v.current?.hit === hit) return;
  const moved = !v.current || v.current.hit.s !== hit.s;
  v.current?.node.removeAttribute('aria-current');
  renderWords(hit.s);
  const node = v.segments[hit.s].nodes[hit.w];
  node.setAttribute('aria-current', 'true');
  v.current = { hit, node };
  if (moved && !player.paused && $('#follow').checked) {
    transcript.children[hit.s].scrollIntoView({ block: 'center', behavior: 'smooth' });
  }
}

function tick() {
  sync();
  if (!player.paused) requestAnimationFrame(tick);
}
player.addEventListener('play', tick);
player.addEventListener('seeked', sync);
player.addEventListener('timeupdate', sync);
$('#speed').addEventListener('change', () => {
  player.playbackRate = player.defaultPlaybackRate = Number($('#speed').value);
});

document.addEventListener('keydown', (e) => {
  if (!view || !player.getAttribute('src') || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.closest('input, textarea, select, audio, [contenteditable]')) return;
  if (e.key === ' ' && !e.target.closest('button, a')) {
    e.preventDefault();
    if (player.paused) player.play().catch((err) => note(`The audio does not play: ${err.message}`));
    else player.pause();
  } else if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
    e.preventDefault();
    seek(player.currentTime + (e.key === 'ArrowLeft' ? -5 : 5));
  }
});

// search

const query = () => $('#search').value.trim().toLowerCase();

function markHits(s, q) {
  s.nodes?.forEach((n, j) => n.classList.toggle('hit', Boolean(q) && s.words[j].text.toLowerCase().includes(q)));
}

function search() {
  const q = query();
  let found = 0;
  for (const s of view?.segments || []) {
    const hit = !q || s.text.toLowerCase().includes(q) || (s.name || '').toLowerCase().includes(q);
    transcript.children[s.index].hidden = !hit;
    found += q && hit ? 1 : 0;
    markHits(s, q);
  }
  $('#search-count').textContent = q ? `${found} segment${found === 1 ? '' : 's'}` : '';
}
$('#search').addEventListener('input', search);

// corrections

transcript.addEventListener('click', (e) => {
  const word = e.target.closest('[data-testid=word]');
  if (word) return seek(Number(word.dataset.start));
  const time = e.target.closest('[data-seek]');
  if (time) return seek(Number(time.dataset.seek));
  const name = e.target.closest('[data-testid=speaker-name]');
  if (name) return rename(name);
  const edit = e.target.closest('.edit');
  if (edit) openEditor(Number(edit.closest('.segment').dataset.index));
});

function rename(button) {
  const v = view;
  const label = button.dataset.label;
  const input = el('input', { class: 'speaker-input', value: button.textContent, maxlength: 100, 'aria-label': `Name of ${label}` });
  button.replaceWith(input);
  input.focus();
  input.select();
  let busy = false;
  input.addEventListener('blur', () => busy || input.replaceWith(button));
  input.addEventListener('keydown', async (e) => {
    if (e.key === 'Escape') input.blur();
    if (e.key !== 'Enter' || busy) return;
    busy = true;
    input.disabled = true;
    try {
      const corrections = await api(path(v, '/speakers'), { method: 'PATCH', json: { [label]: input.value.trim() } });
      if (!current(v)) return;
      const name = corrections.speakers[label] ?? label;
      for (const s of v.segments) if (s.label === label) s.name = name;
      for (const b of transcript.querySelectorAll('[data-testid=speaker-name]')) if (b.dataset.label === label) b.textContent = name;
      button.textContent = name;
      input.replaceWith(button);
      legend(v);
    } catch (err) {
      busy = false;
      input.disabled = false;
      input.focus();
      note(err.message);
    }
  });
}

function openEditor(index) {
  const v = view;
  const node = transcript.children[index];
  if (node.querySelector('.editor')) return;
  const s = v.segments[index];
  const text = el('textarea', { rows: 3, 'aria-label': 'Text of this turn' }, s.text);
  const labels = [...v.colours.keys()];
  const names = new Map(v.segments.filter((x) => x.label).map((x) => [x.label, x.name]));
  const speaker = s.label && el('select', { 'aria-label': 'Speaker of this turn' },
    ...labels.map((l) => el('option', { value: l, selected: l === s.label }, names.get(l) ?? l)),
    el('option', { value: '' }, 'a new speaker'));
  const error = el('span', { class: 'error', role: 'alert' });
  const cancel = el('button', { type: 'button' }, 'Cancel');
  const form = el('form', { class: 'editor' }, text,
    el('div', { class: 'editor-row' }, speaker && el('label', {}, 'Speaker ', speaker), el('button', { class: 'primary' }, 'Save'), cancel, error));
  cancel.addEventListener('click', () => form.remove());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const change = {};
    if (text.value.trim() && text.value.trim() !== s.text) change.text = text.value.trim();
    if (speaker && speaker.value !== s.label) change.speaker = speaker.value || newLabel(labels);
    if (!Object.keys(change).length) return form.remove();
    try {
      await api(path(v, `/segments/${index}`), { method: 'PATCH', json: change });
      const task = await api(path(v));
      if (!current(v)) return;
      v.segments[index] = segmentData(task.result.segments[index], index);
      node.replaceWith(segmentNode(v, v.segments[index]));
      renderWords(index);
      indexWords(v);
      legend(v);
    } catch (err) {
      error.textContent = err.message;
    }
  });
  node.append(form);
  text.focus();
}

function newLabel(labels) {
  for (let n = labels.length; ; n += 1) {
    const label = `SPEAKER_${String(n).padStart(2, '0')}`;
    if (!labels.includes(label)) return label;
  }
}

// subtitles in the chosen layout: lines per cue and characters per line
function exportLinks(v) {
  const layout = $('#cue-layout').value;
  for (const format of FORMATS) {
    const subtitles = layout && (format === 'srt' || format === 'vtt');
    $(`[data-testid=export-${format}]`).href = path(v, `?format=${format}${subtitles ? `&${layout}` : ''}`);
  }
}
$('#cue-layout').addEventListener('change', () => view && exportLinks(view));

// exports: a plain download link, unless the key must go with the request
document.addEventListener('click', (e) => {
  const link = e.target.closest('[data-testid^=export-]');
  if (!link || !getKey()) return;
  e.preventDefault();
  download(link.getAttribute('href'), link.download).catch((err) => note(err.message));
});
