// The single page: sign-in, the header, and the router (#/checkin, #/patient/ID,
// #/order/ID, #/ems, #/ems/CARD).

import { api, setToken, token, whenUnauthorized, WhoAmI } from './api';
import { errorBox, go, pageShown, setRouter } from './page';
import { announce, fill, h, nextId } from './dom';
import { Lang, lang, setLang, t, tx } from './i18n';
import { config, forgetSession, leave, state } from './state';
import { renderPatient } from './patient';
import { renderOrder } from './order';
import { renderEms } from './ems';

const main = () => document.getElementById('main') as HTMLElement;

function roleText(role: string): string {
  return tx(`role_${role}`, role);
}

function isEms(): boolean {
  return state.me?.role === 'ems-crew';
}

function homeHash(): string {
  return isEms() ? '#/ems' : '#/checkin';
}

/** The header: app name, navigation, who is signed in, language switch, sign out. */
function renderHeader(): void {
  const top = document.getElementById('top');
  if (!top) return;
  const me = state.me;
  const navItems: Array<[string, string]> = me
    ? isEms()
      ? [['#/ems', t('navEms')]]
      : [
          ['#/checkin', t('navCheckin')],
          ['#/order', t('navOrder')],
        ]
    : [];
  const here = location.hash.split('/').slice(0, 2).join('/');
  const other: Lang = lang() === 'ja' ? 'en' : 'ja';
  fill(
    top,
    h('div', { class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '連'), h('span', null, t('app'))),
    navItems.length
      ? h(
          'nav',
          { 'aria-label': t('nav') },
          h(
            'ul',
            null,
            navItems.map(([href, label]) =>
              h('li', null, h('a', { href, 'aria-current': here === href ? 'page' : null }, label)),
            ),
          ),
        )
      : null,
    h(
      'div',
      { class: 'who' },
      me
        ? h(
            'p',
            { class: 'signed-in', 'data-testid': 'whoami' },
            h('span', { class: 'sr-only' }, `${t('signedInAs')}: `),
            h('strong', null, me.name),
            h('span', { class: 'role' }, roleText(me.role)),
            h('span', { class: 'fac' }, me.facility_name || me.facility || t('noFacility')),
          )
        : null,
      h(
        'button',
        {
          type: 'button',
          class: 'lang',
          lang: other,
          'aria-label': t('switchLangLabel'),
          'data-testid': 'lang-switch',
          onclick: () => {
            setLang(other);
            renderHeader();
            void route();
          },
        },
        t('switchLang'),
      ),
      me ? h('button', { type: 'button', class: 'signout', onclick: signOut }, t('signout')) : null,
    ),
  );
  const skip = document.querySelector('.skip');
  if (skip) skip.textContent = t('skip');
}

function signOut(): void {
  // forget the token in this tab only: it stays valid for the user's other sessions
  setToken(null);
  forgetSession();
  leave();
  renderHeader();
  announce(t('signedOut'));
  go('#/signin');
}

whenUnauthorized(() => {
  setToken(null);
  forgetSession();
  renderHeader();
  sessionStorage.setItem('renkei.notice', 'sessionEnded');
  go('#/signin');
});

function renderSignin(): void {
  const id = nextId('token');
  const err = h('div', { class: 'form-error', 'aria-live': 'assertive' });
  const notice = sessionStorage.getItem('renkei.notice');
  sessionStorage.removeItem('renkei.notice');
  const input = h('input', {
    id,
    name: 'token',
    type: 'password',
    required: true,
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-describedby': `${id}-hint`,
  });
  const form = h(
    'form',
    {
      class: 'card narrow',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const tok = input.value.trim();
        if (!tok) return;
        fill(err);
        try {
          const me = await api<WhoAmI>('/api/whoami', { token: tok });
          setToken(tok);
          state.me = me;
          renderHeader();
          go(homeHash());
        } catch (e) {
          fill(err, errorBox(e));
          input.focus();
        }
      },
    },
    h('h1', null, t('signin')),
    notice ? h('p', { class: 'notice', role: 'status' }, t('sessionEnded')) : null,
    h('p', { id: `${id}-hint`, class: 'hint' }, t('signinIntro')),
    h('label', { for: id }, t('token')),
    input,
    err,
    h('button', { type: 'submit', class: 'primary' }, t('signin')),
  );
  fill(main(), form);
  pageShown(t('signin'));
  input.focus();
}

function renderCheckin(): void {
  const id = nextId('card');
  const rid = nextId('rid');
  const out = h('div', { 'aria-live': 'polite' });
  const input = h('input', {
    id,
    name: 'card',
    inputmode: 'numeric',
    autocomplete: 'off',
    required: true,
    spellcheck: 'false',
    'aria-describedby': `${id}-hint`,
    'data-testid': 'card-input',
  });
  const ridInput = h('input', { id: rid, name: 'regional-id', inputmode: 'numeric', autocomplete: 'off' });
  fill(
    main(),
    h(
      'section',
      { class: 'card narrow' },
      h('h1', null, t('checkinTitle')),
      h('p', { class: 'hint' }, t('checkinIntro')),
      h(
        'form',
        {
          onsubmit: async (ev: Event) => {
            // a keyboard-wedge reader types the number and an Enter: the form submits
            ev.preventDefault();
            const card = input.value.replace(/[\s-]/g, '');
            if (!card) return;
            fill(out, h('p', { class: 'loading' }, t('loading')));
            try {
              const r = await api<{ patient: { id: string } }>('/api/encounters/checkin', {
                method: 'POST',
                body: { card },
              });
              announce(t('checkedIn'));
              go(`#/patient/${encodeURIComponent(r.patient.id)}`);
            } catch (e) {
              fill(out, errorBox(e));
              input.select();
            }
          },
        },
        h('label', { for: id }, t('cardNumber')),
        h('p', { id: `${id}-hint`, class: 'hint small' }, t('cardHint')),
        h('div', { class: 'row' }, input, h('button', { type: 'submit', class: 'primary' }, t('checkin'))),
      ),
      out,
      h(
        'details',
        { class: 'alt' },
        h('summary', null, t('openByRegionalId')),
        h(
          'form',
          {
            onsubmit: (ev: Event) => {
              ev.preventDefault();
              const v = ridInput.value.trim();
              if (v) go(`#/patient/${encodeURIComponent(v)}`);
            },
          },
          h('label', { for: rid }, t('regionalId')),
          h('div', { class: 'row' }, ridInput, h('button', { type: 'submit' }, t('open'))),
        ),
      ),
    ),
  );
  pageShown(t('checkinTitle'));
  input.focus();
}

let routing = 0;

async function route(): Promise<void> {
  const n = ++routing;
  leave();
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const page = parts[0] || '';
  if (!token()) {
    renderHeader();
    renderSignin();
    return;
  }
  if (!state.me) {
    try {
      [state.me] = await Promise.all([api<WhoAmI>('/api/whoami'), config()]);
    } catch {
      setToken(null);
      renderHeader();
      renderSignin();
      return;
    }
  } else {
    await config();
  }
  if (n !== routing) return;
  renderHeader();
  const m = main();
  switch (page) {
    case '':
    case 'signin':
      go(homeHash());
      return;
    case 'checkin':
      renderCheckin();
      return;
    case 'patient':
      await renderPatient(m, parts[1] || '');
      return;
    case 'order':
      await renderOrder(m, parts[1] || '');
      return;
    case 'ems':
      await renderEms(m, parts[1] || '');
      return;
    default:
      fill(m, h('section', { class: 'card narrow' }, h('h1', null, t('notFound'))));
      pageShown(t('notFound'));
  }
}

function start(): void {
  setLang(lang());
  setRouter(() => void route());
  window.addEventListener('hashchange', () => void route());
  void route();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
