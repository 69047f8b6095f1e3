// Helpers every page uses: navigation, the page-shown ritual, error boxes.

import { ApiError } from './api';
import { announce, h } from './dom';
import { t } from './i18n';

let router: () => void = () => {};
export function setRouter(f: () => void): void {
  router = f;
}

/** Go to a route (re-render when it is the current one). */
export function go(hash: string): void {
  if (location.hash === hash) router();
  else location.hash = hash;
}

/** Title, focus and announcement of a newly shown page. */
export function pageShown(title: string): void {
  document.title = `${title} — Renkei`;
  const h1 = document.querySelector('#main h1');
  if (h1) {
    h1.setAttribute('tabindex', '-1');
    (h1 as HTMLElement).focus({ preventScroll: true });
  }
  announce(title);
}

/** An error box (role alert) with the node's text. */
export function errorBox(e: unknown, title?: string): HTMLElement {
  const status = e instanceof ApiError ? e.status : 0;
  const detail = e instanceof Error ? e.message : String(e);
  return h(
    'div',
    { class: 'error', role: 'alert', 'data-status': status || null },
    h('strong', null, title || (status === 403 ? t('denied') : t('error'))),
    ' ',
    h('span', { class: 'detail' }, detail),
  );
}
