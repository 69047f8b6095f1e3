// Every call to the node: the bearer token from sessionStorage, JSON in and out, errors
// (JSON {detail} or a FHIR OperationOutcome) as ApiError with the node's text.

const KEY = 'renkei.token';

export interface WhoAmI {
  user_id: string;
  name: string;
  facility: string | null;
  facility_name: string | null;
  role: string;
  token_id: string;
  single_site: boolean;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public detail: string,
  ) {
    super(detail || `HTTP ${status}`);
  }
}

export function token(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(t: string | null): void {
  try {
    if (t) sessionStorage.setItem(KEY, t);
    else sessionStorage.clear();
  } catch {
    /* storage blocked */
  }
}

/** Called on a 401 after sign-in (token revoked or expired). */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

async function errorOf(r: Response): Promise<ApiError> {
  let detail = '';
  try {
    const text = await r.text();
    try {
      const v = JSON.parse(text);
      if (v && v.resourceType === 'OperationOutcome' && Array.isArray(v.issue)) {
        detail = v.issue
          .map((i: { diagnostics?: string; details?: { text?: string } }) => i.diagnostics || i.details?.text || '')
          .filter(Boolean)
          .join('; ');
      } else if (v && typeof v.detail === 'string') {
        detail = v.detail;
      } else if (v && typeof v.error === 'string') {
        detail = v.error;
      }
    } catch {
      detail = text.slice(0, 300);
    }
  } catch {
    /* no body */
  }
  return new ApiError(r.status, detail || `${r.status} ${r.statusText}`);
}

export interface CallOptions {
  method?: string;
  body?: unknown;
  accept?: string;
  contentType?: string;
  /** Use this token instead of the stored one (sign-in). */
  token?: string;
  signal?: AbortSignal;
}

async function call(path: string, o: CallOptions): Promise<Response> {
  const headers: Record<string, string> = {};
  const tok = o.token ?? token();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  if (o.accept) headers.Accept = o.accept;
  let body: BodyInit | undefined;
  if (o.body !== undefined) {
    headers['Content-Type'] = o.contentType || 'application/json';
    body = JSON.stringify(o.body);
  }
  const r = await fetch(path, { method: o.method || 'GET', headers, body, signal: o.signal, cache: 'no-store' });
  if (!r.ok) {
    const e = await errorOf(r);
    if (r.status === 401 && !o.token) onUnauthorized();
    throw e;
  }
  return r;
}

/** A JSON (or FHIR JSON) call. */
export async function api<T = any>(path: string, o: CallOptions = {}): Promise<T> {
  const r = await call(path, { accept: 'application/json', ...o });
  if (r.status === 204) return [] as unknown as T;
  const text = await r.text();
  return (text ? JSON.parse(text) : null) as T;
}

/** A FHIR call (application/fhir+json). */
export function fhir<T = any>(path: string, o: CallOptions = {}): Promise<T> {
  return api<T>(path, { accept: 'application/fhir+json', contentType: 'application/fhir+json', ...o });
}

/** Bytes (images, attachments) as a Blob. */
export async function blob(path: string, accept = '*/*', signal?: AbortSignal): Promise<Blob> {
  const r = await call(path, { accept, signal });
  return r.blob();
}

/** An absolute URL of the node as a path of this origin (links the node builds from Host). */
export function localPath(url: string): string {
  try {
    const u = new URL(url, location.href);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}
