// The patient page: header, alert banner, timeline across facilities, lab table with
// sparklines, active medications, imaging studies with thumbnails (→ viewer).

import { blob, fhir, localPath } from './api';
import { fill, h, nextId, s } from './dom';
import {
  R, THUMBNAIL, ageOf, cmp, allergyActive, ccText, clinicalDate, codeKey, doseText, facilityDisplay, facilityOf,
  issueOpen, medActive, obsFlag, patientNames, prescriptionEnd, rangeText, regionalIdOf, valueText, Flag,
} from './fhir';
import { fmtDate, fmtNum, lang, t, tx } from './i18n';
import { errorBox, pageShown } from './page';
import { onLeave, organizations, Org, viewerLink } from './state';
import { openViewer } from './viewer';

const TIMELINE_KINDS = [
  'Encounter', 'Condition', 'MedicationRequest', 'Observation', 'DocumentReference', 'ImagingStudy',
  'AllergyIntolerance', 'ServiceRequest',
];
const PAGE_ROWS = 100;

/** Every resource of `$everything`, following the Bundle's next links. */
export async function everything(id: string, signal?: AbortSignal): Promise<R[]> {
  const out: R[] = [];
  let url: string | null = `/fhir/Patient/${encodeURIComponent(id)}/$everything?_count=1000`;
  for (let pages = 0; url && pages < 50; pages++) {
    const b: R = await fhir<R>(url, { signal });
    for (const e of b.entry || []) if (e.resource) out.push(e.resource);
    const next: R | undefined = (b.link || []).find((l: R) => l.relation === 'next');
    url = next ? localPath(next.url) : null;
  }
  return out;
}

export function facilityName(r: R, orgs: Map<string, Org>): string {
  const code = facilityOf(r);
  if (code && orgs.has(code)) return orgs.get(code)!.name;
  return facilityDisplay(r) || code || t('unknownFacility');
}

function sexText(g: string | undefined): string {
  return g ? tx(`sex_${g}`, g) : '';
}

export function patientHeader(p: R | null, id: string): HTMLElement {
  const names = p ? patientNames(p) : { kanji: '', kana: '' };
  const age = p ? ageOf(p.birthDate) : null;
  return h(
    'div',
    { class: 'pt-head', 'data-testid': 'patient-header' },
    h(
      'div',
      { class: 'pt-name' },
      h('h1', { lang: 'ja' }, names.kanji || id),
      names.kana ? h('p', { class: 'kana', lang: 'ja' }, names.kana) : null,
    ),
    h(
      'dl',
      { class: 'pt-facts' },
      h('div', null, h('dt', null, t('regionalId')), h('dd', { class: 'mono', 'data-testid': 'regional-id' }, p ? regionalIdOf(p) : id)),
      p?.birthDate
        ? h('div', null, h('dt', null, t('birthDate')), h('dd', null, fmtDate(p.birthDate), age !== null ? ` (${t('age', { n: age })})` : ''))
        : null,
      p?.gender ? h('div', null, h('dt', null, t('sex')), h('dd', null, sexText(p.gender))) : null,
    ),
  );
}

function alertsBanner(allergies: R[], issues: R[], orgs: Map<string, Org>): HTMLElement {
  const items: HTMLElement[] = [];
  for (const a of allergies) {
    const crit = a.criticality ? tx(`crit_${a.criticality}`, a.criticality) : '';
    items.push(
      h(
        'li',
        { class: `alert-item allergy${a.criticality === 'high' ? ' high' : ''}` },
        h('span', { class: 'badge danger' }, t('allergy')),
        h('strong', null, ccText(a.code)),
        a.reaction?.[0]?.manifestation?.[0] ? ` — ${ccText(a.reaction[0].manifestation[0])}` : '',
        crit ? h('span', { class: 'muted' }, ` (${t('criticality', { c: crit })})`) : '',
        h('span', { class: 'fac' }, facilityName(a, orgs)),
      ),
    );
  }
  for (const d of issues) {
    items.push(
      h(
        'li',
        { class: 'alert-item dissue' },
        h('span', { class: 'badge warn' }, t('detectedIssue')),
        d.severity ? h('span', { class: 'sev' }, tx(`sev_${d.severity}`, d.severity)) : null,
        h('span', { class: 'detail' }, d.detail || ccText(d.code)),
        d.identifiedDateTime ? h('time', { datetime: d.identifiedDateTime }, fmtDate(d.identifiedDateTime)) : null,
      ),
    );
  }
  return h(
    'section',
    {
      class: `alerts${items.length ? ' has-alerts' : ''}`,
      'aria-label': t('alerts'),
      'data-testid': 'alerts',
    },
    items.length ? h('ul', null, items) : h('p', { class: 'muted' }, t('noAlerts')),
  );
}

const ENCOUNTER_CLASS: Record<string, [string, string]> = {
  AMB: ['外来', 'outpatient'],
  IMP: ['入院', 'inpatient'],
  EMER: ['救急', 'emergency'],
  HH: ['在宅', 'home health'],
  VR: ['オンライン', 'virtual'],
};

function summaryOf(r: R): Array<string | Node> {
  switch (r.resourceType) {
    case 'Encounter': {
      const cls = ENCOUNTER_CLASS[r.class?.code];
      const c = cls ? cls[lang() === 'ja' ? 0 : 1] : r.class?.display || r.class?.code || '';
      const ty = (r.type || []).map(ccText).filter(Boolean).join(', ');
      const why = (r.reasonCode || []).map(ccText).filter(Boolean).join(', ');
      return [[c, ty].filter(Boolean).join(' · ') + (why ? ` — ${why}` : '')];
    }
    case 'Condition': {
      const icd = (r.code?.coding || []).find((c: R) => /icd/i.test(c.system || ''))?.code;
      return [h('strong', null, ccText(r.code)), icd ? h('span', { class: 'code' }, ` ${icd}`) : ''];
    }
    case 'MedicationRequest':
      return [h('strong', null, ccText(r.medicationCodeableConcept) || r.medicationReference?.display || ''), ` ${doseText(r)}`];
    case 'Observation': {
      const f = obsFlag(r);
      return [h('strong', null, ccText(r.code)), ` ${valueText(r)}`, f ? flagMark(f) : ''];
    }
    case 'DocumentReference': {
      const att = r.content?.[0]?.attachment || {};
      const title = r.description || att.title || ccText(r.type);
      return [
        h('strong', null, title),
        att.url
          ? h(
              'button',
              { type: 'button', class: 'link', onclick: () => void openAttachment(att.url, att.contentType) },
              t('openDocument'),
            )
          : '',
      ];
    }
    case 'ImagingStudy': {
      const mods = (r.modality || []).map((m: R) => m.code).join('/');
      return [h('strong', null, [mods, r.description].filter(Boolean).join(' ')), ` (${t('series', { n: r.numberOfSeries ?? 0 })}, ${t('images', { n: r.numberOfInstances ?? 0 })})`];
    }
    case 'AllergyIntolerance':
      return [h('strong', null, ccText(r.code)), r.criticality ? ` (${t('criticality', { c: tx(`crit_${r.criticality}`, r.criticality) })})` : ''];
    case 'ServiceRequest':
      return [h('strong', null, ccText(r.code)), r.status ? ` (${r.status})` : ''];
    default:
      return [r.resourceType];
  }
}

async function openAttachment(url: string, type?: string): Promise<void> {
  const path = localPath(url.startsWith('Binary/') ? `/fhir/${url}` : url);
  const b = await blob(path, type || '*/*');
  const u = URL.createObjectURL(b);
  window.open(u, '_blank', 'noopener');
  window.setTimeout(() => URL.revokeObjectURL(u), 60_000);
}

function flagMark(f: Flag): HTMLElement {
  const label = f === 'H' ? t('high') : f === 'L' ? t('low') : t('abnormal');
  const sym = f === 'H' ? '↑H' : f === 'L' ? '↓L' : '!';
  return h('span', { class: `flag flag-${f}`, title: label }, h('span', { 'aria-hidden': 'true' }, ` ${sym}`), h('span', { class: 'sr-only' }, ` (${label})`));
}

interface Row {
  r: R;
  date: string;
  kind: string;
  facility: string;
  facilityName: string;
}

function timeline(rows: Row[]): HTMLElement {
  const kindId = nextId('kind');
  const facId = nextId('fac');
  const kinds = TIMELINE_KINDS.filter((k) => rows.some((r) => r.kind === k));
  const facs = new Map<string, string>();
  for (const r of rows) facs.set(r.facility, r.facilityName);
  const kindSel = h(
    'select',
    { id: kindId, 'data-testid': 'filter-kind' },
    h('option', { value: '' }, t('all')),
    kinds.map((k) => h('option', { value: k }, tx(`kind_${k}`, k))),
  );
  const facSel = h(
    'select',
    { id: facId, 'data-testid': 'filter-facility' },
    h('option', { value: '' }, t('all')),
    [...facs.entries()].sort((a, b) => a[1].localeCompare(b[1])).map(([code, name]) => h('option', { value: code }, name)),
  );
  const list = h('ol', { class: 'tl', 'data-testid': 'timeline' });
  const status = h('p', { class: 'muted small', 'aria-live': 'polite' });
  const more = h('button', { type: 'button', class: 'more' }, t('showMore'));
  let shown = 0;
  let matching: Row[] = [];
  const item = (x: Row) =>
    h(
      'li',
      { class: `tl-item k-${x.kind}`, 'data-kind': x.kind, 'data-facility': x.facility },
      h('time', { datetime: x.date }, fmtDate(x.date)),
      h('span', { class: `kind k-${x.kind}` }, tx(`kind_${x.kind}`, x.kind)),
      h('span', { class: 'what' }, summaryOf(x.r)),
      h('span', { class: 'fac' }, x.facilityName),
    );
  const showMore = () => {
    const next = matching.slice(shown, shown + PAGE_ROWS);
    list.append(...next.map(item));
    shown += next.length;
    more.hidden = shown >= matching.length;
    status.textContent = matching.length ? t('showing', { n: shown, m: matching.length }) : t('nothing');
  };
  const apply = () => {
    const k = kindSel.value;
    const f = facSel.value;
    matching = rows.filter((r) => (!k || r.kind === k) && (!f || r.facility === f));
    list.replaceChildren();
    shown = 0;
    showMore();
  };
  kindSel.addEventListener('change', apply);
  facSel.addEventListener('change', apply);
  more.addEventListener('click', showMore);
  apply();
  return h(
    'section',
    { class: 'card timeline', 'aria-labelledby': `${kindId}-h` },
    h('h2', { id: `${kindId}-h` }, t('timeline')),
    h(
      'div',
      { class: 'filters' },
      h('div', null, h('label', { for: kindId }, t('kind')), kindSel),
      h('div', null, h('label', { for: facId }, t('facility')), facSel),
    ),
    status,
    list,
    more,
  );
}

function sparkline(values: Array<{ v: number; f: Flag; d: string }>, lo: number | undefined, hi: number | undefined, label: string): SVGElement {
  const W = 120;
  const H = 30;
  const P = 3;
  const vs = values.map((x) => x.v);
  let min = Math.min(...vs, lo ?? Infinity);
  let max = Math.max(...vs, hi ?? -Infinity);
  if (!Number.isFinite(min) || !Number.isFinite(max)) {
    min = 0;
    max = 1;
  }
  if (max === min) {
    max += 1;
    min -= 1;
  }
  const x = (i: number) => (values.length === 1 ? W / 2 : P + (i * (W - 2 * P)) / (values.length - 1));
  const y = (v: number) => H - P - ((v - min) * (H - 2 * P)) / (max - min);
  const kids: SVGElement[] = [s('title', null, label)];
  if (lo !== undefined || hi !== undefined) {
    const top = y(hi ?? max);
    const bottom = y(lo ?? min);
    kids.push(s('rect', { class: 'band', x: 0, y: top, width: W, height: Math.max(1, bottom - top) }));
  }
  kids.push(s('polyline', { class: 'line', points: values.map((p, i) => `${x(i).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ') }));
  values.forEach((p, i) => {
    if (p.f || i === values.length - 1) {
      kids.push(s('circle', { class: p.f ? 'oor' : 'last', cx: x(i).toFixed(1), cy: y(p.v).toFixed(1), r: p.f ? 2.6 : 2.2 }));
    }
  });
  return s('svg', { class: 'spark', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': label }, kids);
}

function labTable(obs: R[]): HTMLElement {
  const groups = new Map<string, R[]>();
  for (const o of obs) {
    if (typeof o.valueQuantity?.value !== 'number') continue;
    if (['cancelled', 'entered-in-error', 'registered'].includes(o.status)) continue;
    const k = codeKey(o.code);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(o);
  }
  const id = nextId('labs');
  if (!groups.size) {
    return h('section', { class: 'card labs', 'aria-labelledby': id }, h('h2', { id }, t('labs')), h('p', { class: 'muted' }, t('noLabs')));
  }
  const rows = [...groups.values()]
    .map((g) => g.sort((a, b) => cmp(clinicalDate(a), clinicalDate(b))))
    .sort((a, b) => ccText(a[a.length - 1].code).localeCompare(ccText(b[b.length - 1].code)));
  return h(
    'section',
    { class: 'card labs', 'aria-labelledby': id },
    h('h2', { id }, t('labs')),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { 'data-testid': 'labs' },
        h(
          'thead',
          null,
          h('tr', null, h('th', { scope: 'col' }, t('test'), h('span', { class: 'sub' }, t('refRange'))), h('th', { scope: 'col' }, t('latest'), h('span', { class: 'sub' }, t('date'))), h('th', { scope: 'col' }, t('trend')), h('th', { scope: 'col', class: 'num' }, t('count'))),
        ),
        h(
          'tbody',
          null,
          rows.map((g) => {
            const last = g[g.length - 1];
            const f = obsFlag(last);
            const name = ccText(last.code);
            const pts = g.slice(-30).map((o) => ({ v: o.valueQuantity.value as number, f: obsFlag(o), d: clinicalDate(o) }));
            const rr = last.referenceRange?.[0];
            const recent = pts.slice(-5).map((p) => fmtNum(p.v)).join(', ');
            return h(
              'tr',
              { class: f ? 'out-of-range' : null, 'data-test': name },
              h('th', { scope: 'row' }, name, rangeText(last) ? h('span', { class: 'sub' }, rangeText(last)) : null),
              h(
                'td',
                { class: `val${f ? ` flag-${f}` : ''}` },
                valueText(last),
                f ? flagMark(f) : '',
                h('time', { class: 'sub', datetime: clinicalDate(last) }, fmtDate(clinicalDate(last))),
              ),
              h('td', null, sparkline(pts, rr?.low?.value, rr?.high?.value, t('trendOf', { test: name, values: recent }))),
              h('td', { class: 'num' }, String(g.length)),
            );
          }),
        ),
      ),
    ),
  );
}

function medications(meds: R[], orgs: Map<string, Org>): HTMLElement {
  const id = nextId('meds');
  const active = meds.filter((m) => medActive(m)).sort((a, b) => cmp(clinicalDate(b), clinicalDate(a)));
  return h(
    'section',
    { class: 'card meds', 'aria-labelledby': id },
    h('h2', { id }, t('meds')),
    active.length
      ? h(
          'ul',
          { class: 'med-list', 'data-testid': 'meds' },
          active.map((m) => {
            const end = prescriptionEnd(m);
            return h(
              'li',
              null,
              h('strong', null, ccText(m.medicationCodeableConcept) || m.medicationReference?.display || ''),
              doseText(m) ? h('span', { class: 'dose' }, ` ${doseText(m)}`) : '',
              h('br'),
              h('span', { class: 'muted small' }, t('prescribedBy', { facility: facilityName(m, orgs), date: fmtDate(m.authoredOn) }), end ? ` · ${t('until', { date: fmtDate(new Date(end)) })}` : ''),
            );
          }),
        )
      : h('p', { class: 'muted' }, t('noMeds')),
  );
}

function imaging(studies: R[], orgs: Map<string, Org>): HTMLElement {
  const id = nextId('img');
  const sorted = [...studies].sort((a, b) => cmp(b.started || '', a.started || ''));
  const urls: string[] = [];
  onLeave(() => urls.forEach((u) => URL.revokeObjectURL(u)));
  const jobs: Array<() => Promise<void>> = [];
  const cards = sorted.map((st) => {
    const mods = (st.modality || []).map((m: R) => m.code).join('/');
    const what = [mods, st.description, fmtDate(st.started)].filter(Boolean).join(' ');
    const img = h('img', { alt: t('thumbnailOf', { what }), width: 128, height: 128, 'data-testid': 'thumbnail' });
    const ph = h('span', { class: 'thumb-ph', 'aria-hidden': 'true' }, mods || 'DICOM');
    const thumb = h('button', { type: 'button', class: 'thumb', 'aria-label': `${t('openViewer')}: ${what}`, onclick: () => openViewer(st, facilityName(st, orgs)) }, ph);
    const ext = (st.extension || []).find((x: R) => x.url === THUMBNAIL);
    const path = ext?.valueUrl ? localPath(ext.valueUrl) : `/dicom-web/studies/${encodeURIComponent(st.id)}/thumbnail`;
    jobs.push(async () => {
      try {
        const b = await blob(path, 'image/jpeg, image/png;q=0.9');
        const u = URL.createObjectURL(b);
        urls.push(u);
        img.src = u;
        await img.decode().catch(() => undefined);
        thumb.replaceChildren(img);
      } catch {
        ph.textContent = `${mods || 'DICOM'} · ${t('noThumbnail')}`;
      }
    });
    const link = viewerLink(st.id);
    return h(
      'li',
      { class: 'study', 'data-study': st.id },
      thumb,
      h(
        'div',
        { class: 'study-info' },
        h('strong', null, [mods, st.description].filter(Boolean).join(' ') || 'DICOM'),
        h('br'),
        st.started ? h('time', { datetime: st.started }, fmtDate(st.started)) : '',
        h('span', { class: 'fac' }, facilityName(st, orgs)),
        h('br'),
        h('span', { class: 'muted small' }, `${t('series', { n: st.numberOfSeries ?? 0 })} · ${t('images', { n: st.numberOfInstances ?? 0 })}`),
        h('div', { class: 'study-actions' },
          h('button', { type: 'button', onclick: () => openViewer(st, facilityName(st, orgs)) }, t('openViewer')),
          link ? h('a', { href: link, target: '_blank', rel: 'noopener', class: 'ext', 'data-testid': 'ohif-link' }, t('openOhif')) : null,
        ),
      ),
    );
  });
  // a few thumbnails at a time, after the page is on screen
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) await jobs[next++]();
  };
  window.setTimeout(() => {
    for (let i = 0; i < 3; i++) void worker();
  }, 0);
  return h(
    'section',
    { class: 'card imaging', 'aria-labelledby': id },
    h('h2', { id }, t('imaging')),
    cards.length ? h('ul', { class: 'studies', 'data-testid': 'studies' }, cards) : h('p', { class: 'muted' }, t('noImaging')),
  );
}

export async function renderPatient(main: HTMLElement, id: string): Promise<void> {
  const ctl = new AbortController();
  onLeave(() => ctl.abort());
  fill(main, h('p', { class: 'loading', role: 'status' }, t('loading')));
  let all: R[];
  let orgs: Map<string, Org>;
  try {
    [all, orgs] = await Promise.all([everything(id, ctl.signal), organizations()]);
  } catch (e) {
    if (ctl.signal.aborted) return;
    fill(main, h('section', { class: 'card narrow' }, h('h1', null, t('patient'), ` ${id}`), errorBox(e)));
    pageShown(`${t('patient')} ${id}`);
    return;
  }
  if (ctl.signal.aborted) return;
  performance.mark('renkei:patient-data');
  const patient = all.find((r) => r.resourceType === 'Patient') || null;
  const of = (type: string) => all.filter((r) => r.resourceType === type);
  const allergies = of('AllergyIntolerance').filter(allergyActive);
  const issues = of('DetectedIssue').filter(issueOpen).sort((a, b) => cmp(clinicalDate(b), clinicalDate(a)));
  const rows: Row[] = all
    .filter((r) => TIMELINE_KINDS.includes(r.resourceType))
    .map((r) => {
      const date = clinicalDate(r);
      const facility = facilityOf(r) || '';
      return { r, date, kind: r.resourceType, facility, facilityName: facilityName(r, orgs) };
    })
    .sort((a, b) => cmp(b.date, a.date));
  const names = patient ? patientNames(patient) : { kanji: id, kana: '' };
  fill(
    main,
    h(
      'div',
      { class: 'patient' },
      patientHeader(patient, id),
      h('div', { class: 'pt-actions' }, h('a', { href: `#/order/${encodeURIComponent(id)}`, class: 'button' }, t('orderCheckLink'))),
      alertsBanner(allergies, issues, orgs),
      h(
        'div',
        { class: 'cols' },
        h('div', { class: 'col-main' }, timeline(rows)),
        h('div', { class: 'col-side' }, medications(of('MedicationRequest'), orgs), labTable(of('Observation')), imaging(of('ImagingStudy'), orgs)),
      ),
    ),
  );
  performance.mark('renkei:patient-built');
  pageShown(`${names.kanji || id} — ${t('patient')}`);
  // time to first render of the patient page (docs/PERFORMANCE.md)
  requestAnimationFrame(() => window.setTimeout(() => performance.mark('renkei:patient-rendered'), 0));
}
