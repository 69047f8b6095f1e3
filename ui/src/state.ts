// What the pages share: who is signed in, the node's UI settings, the facility directory,
// and clean-up work of the page on screen (timers, blob URLs) run when it is left.

import { api, fhir, WhoAmI } from './api';
import { R, phoneOf } from './fhir';

export const state: { me: WhoAmI | null; config: { viewer_url?: string } | null } = {
  me: null,
  config: null,
};

let cleanups: Array<() => void> = [];

/** Run when the current page is left. */
export function onLeave(f: () => void): void {
  cleanups.push(f);
}

export function leave(): void {
  const cs = cleanups;
  cleanups = [];
  for (const f of cs) {
    try {
      f();
    } catch {
      /* keep going */
    }
  }
}

export interface Org {
  code: string;
  name: string;
  phone: string;
}

let orgs: Promise<Map<string, Org>> | null = null;

/** Every facility of the region (FHIR Organization directory), cached for the session. */
export function organizations(): Promise<Map<string, Org>> {
  if (!orgs) {
    orgs = fhir<R>('/fhir/Organization?_count=1000')
      .then((b) => {
        const m = new Map<string, Org>();
        for (const e of b.entry || []) {
          const o = e.resource || {};
          if (o.resourceType === 'Organization' && o.id) m.set(o.id, { code: o.id, name: o.name || o.id, phone: phoneOf(o) });
        }
        return m;
      })
      .catch(() => {
        orgs = null;
        return new Map<string, Org>();
      });
  }
  return orgs;
}

export function forgetSession(): void {
  state.me = null;
  orgs = null;
}

/** The node's UI settings (`/ui/config.json`). */
export async function config(): Promise<{ viewer_url?: string }> {
  if (!state.config) {
    try {
      state.config = await api('/ui/config.json');
    } catch {
      state.config = {};
    }
  }
  return state.config || {};
}

/** The OHIF-style viewer link of a study, or null when none is configured. */
export function viewerLink(study: string): string | null {
  const tpl = state.config?.viewer_url;
  if (!tpl) return null;
  const base = location.origin;
  return tpl
    .split('{study}').join(encodeURIComponent(study))
    .split('{base}').join(base)
    .split('{dicomweb}').join(encodeURIComponent(`${base}/dicom-web`));
}
