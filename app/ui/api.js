// Talking to the service: the API key (sessionStorage), JSON calls, uploads with progress.
const KEY = 'whisperx.apiKey';
let unauthorized = () => {};

export const onUnauthorized = (handler) => { unauthorized = handler; };
export const getKey = () => sessionStorage.getItem(KEY) || '';
export const setKey = (key) => (key ? sessionStorage.setItem(KEY, key) : sessionStorage.removeItem(KEY));
const authorization = () => (getKey() ? { Authorization: `Bearer ${getKey()}` } : {});

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The service's error envelope, or FastAPI's list for a request that did not validate.
function failure(status, body) {
  if (status === 401) unauthorized();
  if (body?.error?.message) return new ApiError(status, body.error.message);
  if (Array.isArray(body?.detail)) {
    const what = body.detail.map((d) => `${(d.loc || []).slice(1).join('.')}: ${d.msg}`);
    return new ApiError(status, what.join('; '));
  }
  return new ApiError(status, `The service answered ${status}.`);
}

export async function api(path, { method = 'GET', json } = {}) {
  const headers = authorization();
  if (json !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: json === undefined ? undefined : JSON.stringify(json) });
  } catch {
    throw new ApiError(0, 'The service cannot be reached.');
  }
  const isJson = (response.headers.get('content-type') || '').includes('json');
  const body = isJson ? await response.json() : await response.text();
  if (!response.ok) throw failure(response.status, body);
  return body;
}

// Save a file the service renders, sending the key (a plain link cannot).
export async function download(path, filename) {
  const response = await fetch(path, { headers: authorization() });
  if (!response.ok) throw failure(response.status, await response.json().catch(() => null));
  const url = URL.createObjectURL(await response.blob());
  const link = el('a', { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// POST a form with XMLHttpRequest, whose upload reports progress (fetch cannot).
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    for (const [name, value] of Object.entries(authorization())) xhr.setRequestHeader(name, value);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => (xhr.status < 300 ? resolve(xhr.response) : reject(failure(xhr.status, xhr.response)));
    xhr.onerror = () => reject(new ApiError(0, 'The upload failed: the service cannot be reached.'));
    xhr.send(form);
  });
}

// An element with attributes (null and false leave one out) and children.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// Seconds as m:ss or h:mm:ss.
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const [h, m, r] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const pad = (n) => String(n).padStart(2, '0');
  return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}

export const unfinished = (status) => status === 'queued' || status === 'processing';

// What a task is doing now, in words: "transcribing · 42 %", "2nd in the queue".
export function stageText(status, stage, progress, position) {
  if (status === 'queued') return position ? `${position === 1 ? 'next' : `number ${position}`} in the queue` : 'waiting';
  if (status === 'processing') return `${stage || 'starting'} · ${Math.round(progress || 0)} %`;
  return '';
}
