// Thin client of the orchestrator's HTTP API. Every failure becomes an ApiError whose message a
// person can read: the server's `detail` (a string, or FastAPI's validation list) with the status.

// Relative to the page, so the viewer works under any path prefix the API is served at.
const BASE = new URL('./', document.baseURI);

export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
export const JOB_EVENTS = ['queued', 'started', 'stage', 'progress', 'completed', 'failed', 'cancelled'];

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

export function apiUrl(path) {
  return new URL(path.replace(/^\//, ''), BASE).href;
}

/** Turn a `{detail}` body into one sentence: FastAPI sends a string or a list of field errors. */
export function describeDetail(detail) {
  if (detail == null) return '';
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => {
      if (typeof item !== 'object' || item === null) return String(item);
      // loc is e.g. ["body", "mode"]: the first element only says where FastAPI looked.
      const loc = Array.isArray(item.loc) ? item.loc.filter((p) => p !== 'body').join('.') : '';
      return loc ? `${loc}: ${item.msg}` : String(item.msg ?? JSON.stringify(item));
    }).join('; ');
  }
  return JSON.stringify(detail);
}

async function errorFrom(response) {
  let text = '';
  try {
    text = await response.text();
    const body = JSON.parse(text);
    text = describeDetail(body.detail ?? body.error ?? body) || text;
  } catch {
    // Not JSON (a proxy's HTML page, say): its text, shortened, is still better than nothing.
    text = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300);
  }
  const retry = response.headers.get('Retry-After');
  const suffix = retry ? ` (retry after ${retry} s)` : '';
  const reason = text || response.statusText || 'request failed';
  return new ApiError(`${response.status} ${reason}${suffix}`, response.status);
}

async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path), options);
  } catch (err) {
    throw new ApiError(`The server could not be reached (${err.message}).`, 0);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

async function json(path, options) {
  return (await request(path, options)).json();
}

/** Submit a job: a prompt as JSON, or a photo as multipart. Returns `{id, status, ...urls}`. */
export async function submitJob({ prompt, vibe, mode, apiKey, image, quality, edges }) {
  const headers = {};
  // The key travels in a header so it never lands in a URL, a form log or the job's JSON.
  if (apiKey) headers['X-OpenAI-Key'] = apiKey;
  let body;
  if (image) {
    body = new FormData();
    body.append('image', image, image.name);
    if (vibe) body.append('vibe', vibe);
    body.append('mode', mode);
    if (quality) body.append('quality', quality);
    if (edges) body.append('edges', edges);
  } else {
    headers['Content-Type'] = 'application/json';
    const payload = { prompt, mode };
    if (vibe) payload.vibe = vibe;
    if (quality) payload.quality = quality;
    if (edges) payload.edges = edges;
    body = JSON.stringify(payload);
  }
  return json('jobs', { method: 'POST', headers, body });
}

export function getJob(id) {
  return json(`jobs/${encodeURIComponent(id)}`);
}

export function cancelJob(id) {
  return json(`jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
}

/** The limits in force and, where the server lists them, the formats it serves
 * (`formats`: [{name, geometry: ['points', 'mesh']}, ...]); see the viewer's README. */
export function getLimits() {
  return json('limits');
}

export function listGenerations({ limit = 12, offset = 0 } = {}) {
  return json(`generations?limit=${limit}&offset=${offset}`);
}

export function getGeneration(id) {
  return json(`generations/${encodeURIComponent(id)}`);
}

export function assetUrl(id, asset) {
  return apiUrl(`generations/${encodeURIComponent(id)}/${asset}`);
}

export async function fetchPointCloud(url) {
  const response = await request(url);
  return response.arrayBuffer();
}

/**
 * Follow a job's Server-Sent Events until a terminal event. `onUpdate(eventName, job)` is called
 * for each event; resolves with the final job. EventSource reconnects by itself (sending
 * Last-Event-ID); when it gives up (404, server gone) the job is polled once for its state.
 */
export function followJob(job, onUpdate) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(apiUrl(job.events_url ?? `jobs/${job.id}/events`));
    let settled = false;
    const finish = (fn, value) => {
      if (settled) return;
      settled = true;
      source.close();
      fn(value);
    };

    for (const name of JOB_EVENTS) {
      source.addEventListener(name, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          finish(reject, new ApiError(`The progress stream sent something unreadable: ${event.data}`, 0));
          return;
        }
        onUpdate(name, data);
        if (TERMINAL.has(data.status) || TERMINAL.has(name)) finish(resolve, data);
      });
    }
    source.addEventListener('error', async () => {
      // CONNECTING means the browser is already retrying; only a closed stream needs us.
      if (source.readyState !== EventSource.CLOSED || settled) return;
      try {
        const state = await getJob(job.id);
        onUpdate(state.status, state);
        if (TERMINAL.has(state.status)) finish(resolve, state);
        else finish(reject, new ApiError('Lost the progress stream of the job.', 0));
      } catch (err) {
        finish(reject, err);
      }
    });
  });
}
