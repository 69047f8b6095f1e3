// The EMS view (tablet, 1024×768, large touch targets): card number + a required reason →
// break-glass (`POST /api/breakglass`) → the emergency summary (`Patient/$summary?card=`)
// on one screen, with the break-glass countdown. Without a grant the node says 403 and the
// page shows the denial beside the form.

import { api, ApiError, fhir } from './api';
import { fill, h, nextId } from './dom';
import {
  R, ageOf, ccText, clinicalDate, doseText, facilityDisplay, facilityOf, obsFlag, patientNames, phoneOf,
  regionalIdOf, valueText,
} from './fhir';
import { fmtDate, Key, t, tx } from './i18n';
import { errorBox, go, pageShown } from './page';
import { onLeave } from './state';

interface Grant {
  patient: string;
  until_us: number;
  started_us: number;
  reason: string;
}

const REASONS: Key[] = ['reason_arrest', 'reason_unconscious', 'reason_trauma', 'reason_breathing'];

const grantKey = (card: string) => `renkei.grant.${card}`;
const clean = (card: string) => card.replace(/[\s-]/g, '');

function savedGrant(card: string): Grant | null {
  try {
    const g = JSON.parse(sessionStorage.getItem(grantKey(card)) || 'null');
    return g && typeof g.until_us === 'number' ? g : null;
  } catch {
    return null;
  }
}

function form(card: string, denial: HTMLElement | null): HTMLElement {
  const cid = nextId('ems-card');
  const rid = nextId('ems-reason');
  const err = h('div', { 'aria-live': 'assertive' });
  const cardIn = h('input', {
    id: cid,
    name: 'card',
    inputmode: 'numeric',
    autocomplete: 'off',
    required: true,
    spellcheck: 'false',
    value: card,
    'aria-describedby': `${cid}-hint`,
    'data-testid': 'ems-card',
  });
  const reasonIn = h('input', {
    id: rid,
    name: 'reason',
    required: true,
    autocomplete: 'off',
    placeholder: t('reasonHint'),
    'data-testid': 'ems-reason',
  });
  const quick = REASONS.map((k) =>
    h(
      'button',
      {
        type: 'button',
        class: 'chip',
        'aria-pressed': 'false',
        onclick: (ev: Event) => {
          reasonIn.value = t(k);
          quick.forEach((b) => b.setAttribute('aria-pressed', b === ev.currentTarget ? 'true' : 'false'));
        },
      },
      t(k),
    ),
  );
  const f = h(
    'form',
    {
      class: 'ems-form',
      novalidate: true,
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const c = clean(cardIn.value);
        const reason = reasonIn.value.trim();
        if (!c) {
          fill(err, errorBox(new Error(t('cardRequired'))));
          cardIn.focus();
          return;
        }
        if (!reason) {
          fill(err, errorBox(new Error(t('reasonRequired'))));
          reasonIn.focus();
          return;
        }
        fill(err, h('p', { class: 'loading' }, t('loading')));
        try {
          const g = await api<Grant>('/api/breakglass', { method: 'POST', body: { card: c, reason } });
          sessionStorage.setItem(grantKey(c), JSON.stringify(g));
          go(`#/ems/${encodeURIComponent(c)}`);
        } catch (e) {
          fill(err, errorBox(e));
        }
      },
    },
    h('div', { class: 'field' }, h('label', { for: cid }, t('cardNumber')), h('p', { id: `${cid}-hint`, class: 'hint small' }, t('cardHint')), cardIn),
    h(
      'div',
      { class: 'field' },
      h('label', { for: rid }, t('reason')),
      h('div', { class: 'chips', role: 'group', 'aria-label': t('reason') }, quick),
      reasonIn,
    ),
    err,
    h('button', { type: 'submit', class: 'primary big', 'data-testid': 'break-glass' }, t('breakGlass')),
  );
  return h(
    'section',
    { class: 'card ems-start' },
    h('h1', null, t('emsTitle')),
    denial,
    h('p', { class: 'hint' }, t('emsIntro')),
    f,
  );
}

function timer(grant: Grant | null): HTMLElement {
  const el = h('p', { class: 'timer', role: 'timer', 'aria-label': t('timerLabel'), 'data-testid': 'bg-timer' });
  if (!grant) {
    el.textContent = t('timerUnknown');
    return el;
  }
  const tick = () => {
    const left = Math.floor((grant.until_us / 1000 - Date.now()) / 1000);
    if (left <= 0) {
      el.textContent = t('timerExpired');
      el.classList.add('expired');
      window.clearInterval(iv);
      return;
    }
    const hh = Math.floor(left / 3600);
    const mm = String(Math.floor((left % 3600) / 60)).padStart(2, '0');
    const ss = String(left % 60).padStart(2, '0');
    fill(el, h('span', { class: 'timer-label' }, t('timerLabel')), ' ', h('strong', { class: 'mono' }, `${hh}:${mm}:${ss}`));
    el.classList.toggle('low', left < 600);
  };
  const iv = window.setInterval(tick, 1000);
  onLeave(() => window.clearInterval(iv));
  tick();
  return el;
}

function box(title: string, cls: string, items: Array<Node | string>, testid: string): HTMLElement {
  const id = nextId('ems-box');
  return h(
    'section',
    { class: `ems-box ${cls}`, 'aria-labelledby': id, 'data-testid': testid },
    h('h2', { id }, title),
    items.length ? h('ul', null, items.map((x) => h('li', null, x))) : h('p', { class: 'muted' }, t('noneRecorded')),
  );
}

function summaryView(card: string, doc: R, grant: Grant | null): HTMLElement {
  const entries: R[] = Array.isArray(doc.entry) ? doc.entry : [];
  const byUrl = new Map<string, R>();
  for (const e of entries) if (e.fullUrl && e.resource) byUrl.set(e.fullUrl, e.resource);
  const resolve = (ref: string): R | undefined => {
    if (byUrl.has(ref)) return byUrl.get(ref);
    // relative references (Type/id) against the entries' full URLs
    for (const [u, r] of byUrl) if (u.endsWith(`/${ref}`)) return r;
    return undefined;
  };
  const comp = entries.map((e) => e.resource).find((r) => r?.resourceType === 'Composition') || {};
  const section = (code: string): R[] => {
    const s = (comp.section || []).find((x: R) => (x.code?.coding || []).some((c: R) => c.code === code));
    return s ? (s.entry || []).map((x: R) => resolve(x.reference)).filter(Boolean) : [];
  };
  const ofType = (type: string) => entries.map((e) => e.resource).filter((r) => r?.resourceType === type);
  const pick = (code: string, type: string) => {
    const s = section(code);
    return s.length ? s : ofType(type);
  };
  const orgs = pick('85847-2', 'Organization');
  const orgName = new Map<string, string>(orgs.map((o: R) => [o.id, o.name]));
  const fac = (r: R) => {
    const c = facilityOf(r);
    return (c && orgName.get(c)) || facilityDisplay(r) || c || '';
  };
  const patient = ofType('Patient')[0] || {};
  const names = patientNames(patient);
  const age = ageOf(patient.birthDate);
  const withFac = (main: Array<Node | string>, r: R) => h('span', null, main, h('span', { class: 'fac' }, fac(r)));

  const allergies = pick('48765-2', 'AllergyIntolerance').map((a: R) =>
    withFac(
      [
        h('strong', null, ccText(a.code)),
        a.reaction?.[0]?.manifestation?.[0] ? ` — ${ccText(a.reaction[0].manifestation[0])}` : '',
        a.criticality ? ` (${t('criticality', { c: tx(`crit_${a.criticality}`, a.criticality) })})` : '',
      ],
      a,
    ),
  );
  const conditions = pick('11450-4', 'Condition').map((c: R) =>
    withFac([h('strong', null, ccText(c.code)), clinicalDate(c) ? ` · ${t('since', { date: fmtDate(clinicalDate(c)) })}` : ''], c),
  );
  const meds = pick('10160-0', 'MedicationRequest').map((m: R) =>
    withFac([h('strong', null, ccText(m.medicationCodeableConcept)), doseText(m) ? ` ${doseText(m)}` : ''], m),
  );
  const labs = pick('30954-2', 'Observation').map((o: R) => {
    const f = obsFlag(o);
    return withFac([h('strong', null, ccText(o.code)), ` ${valueText(o)}`, f ? h('span', { class: `flag flag-${f}` }, f === 'H' ? ' ↑H' : f === 'L' ? ' ↓L' : ' !') : '', ` · ${fmtDate(clinicalDate(o))}`], o);
  });
  const studies = pick('18748-4', 'ImagingStudy').map((s: R) =>
    withFac([h('strong', null, [(s.modality || []).map((m: R) => m.code).join('/'), s.description].filter(Boolean).join(' ')), s.started ? ` · ${fmtDate(s.started)}` : ''], s),
  );
  const phones = orgs.map((o: R) => {
    const ph = phoneOf(o);
    return h('span', { class: 'org' }, h('strong', null, o.name), ' ', ph ? h('a', { class: 'tel', href: `tel:${ph.replace(/[^\d+]/g, '')}` }, ph) : h('span', { class: 'muted' }, t('noPhone')));
  });
  const sex = patient.gender ? tx(`sex_${patient.gender}`, patient.gender) : '';
  return h(
    'div',
    { class: 'ems-summary', 'data-testid': 'ems-summary' },
    h(
      'div',
      { class: 'ems-head' },
      h(
        'div',
        { class: 'ems-who' },
        h('h1', { lang: 'ja' }, names.kanji || regionalIdOf(patient), names.kana ? h('span', { class: 'kana' }, ` ${names.kana}`) : ''),
        h('p', null, [age !== null ? t('age', { n: age }) : '', sex, patient.birthDate ? fmtDate(patient.birthDate) : '', `${t('regionalId')} ${regionalIdOf(patient)}`].filter(Boolean).join(' · ')),
      ),
      h('div', { class: 'ems-side' }, timer(grant), h('button', { type: 'button', class: 'secondary', onclick: () => go('#/ems') }, t('newPatient'))),
    ),
    h(
      'div',
      { class: 'ems-grid' },
      box(t('allergies'), 'allergies', allergies, 'ems-allergies'),
      box(t('conditions'), '', conditions, 'ems-conditions'),
      box(t('meds'), '', meds, 'ems-meds'),
      box(t('recentLabs'), '', labs, 'ems-labs'),
      box(t('lastStudies'), '', studies, 'ems-studies'),
      box(t('facilities'), 'phones', phones, 'ems-facilities'),
    ),
    h('p', { class: 'sr-only' }, `${t('cardNumber')}: ${card}`),
  );
}

export async function renderEms(main: HTMLElement, card: string): Promise<void> {
  if (!card) {
    fill(main, form('', null));
    pageShown(t('emsTitle'));
    (main.querySelector('input') as HTMLInputElement | null)?.focus();
    return;
  }
  const c = clean(card);
  fill(main, h('p', { class: 'loading', role: 'status' }, t('loading')));
  try {
    const doc = await fhir<R>(`/fhir/Patient/$summary?card=${encodeURIComponent(c)}`);
    fill(main, summaryView(c, doc, savedGrant(c)));
    pageShown(t('summaryTitle'));
  } catch (e) {
    const denied = e instanceof ApiError && e.status === 403;
    const note = denied
      ? h('div', { class: 'error', role: 'alert', 'data-status': 403, 'data-testid': 'ems-denied' }, h('strong', null, t('denied')), ' ', t('emsDenied'), h('br'), h('span', { class: 'detail small' }, (e as Error).message))
      : errorBox(e);
    sessionStorage.removeItem(grantKey(c));
    fill(main, form(c, note));
    pageShown(t('emsTitle'));
  }
}
