// Order entry check: a lab test, an imaging order or a drug → the node's dry-run duplicate
// check (`ServiceRequest/$check`, `MedicationRequest/$check`) → the warnings, with the
// earlier records' facility and date.

import { fhir } from './api';
import { fill, h, nextId } from './dom';
import { HOT9, JLAC10, LOINC, R, RXNORM, SNOMED, YJ, ccText, clinicalDate } from './fhir';
import { fmtDate, Key, t, tx } from './i18n';
import { errorBox, pageShown } from './page';
import { facilityName } from './patient';
import { organizations } from './state';

type Kind = 'lab' | 'drug' | 'imaging';

const SYSTEMS: Record<Kind, Array<[string, string]>> = {
  lab: [
    [LOINC, 'LOINC'],
    [JLAC10, 'JLAC10'],
  ],
  drug: [
    [YJ, 'YJ'],
    [HOT9, 'HOT9'],
    [RXNORM, 'RxNorm'],
  ],
  imaging: [[LOINC, 'LOINC']],
};

// suggestions (any code may be typed)
const SUGGEST: Record<Kind, Array<[string, string]>> = {
  lab: [
    ['4548-4', 'HbA1c'],
    ['2345-7', 'Glucose'],
    ['13457-7', 'LDL cholesterol'],
    ['33914-3', 'eGFR'],
    ['2160-0', 'Creatinine'],
  ],
  drug: [
    ['2189015F1022', 'アトルバスタチン / atorvastatin'],
    ['2189017F1028', 'ロスバスタチン / rosuvastatin'],
    ['3962002F1024', 'メトホルミン / metformin'],
    ['2329023F1020', 'ランソプラゾール / lansoprazole'],
  ],
  imaging: [
    ['24627-2', 'CT chest'],
    ['24725-4', 'CT head'],
  ],
};

function today(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function resourceFor(kind: Kind, patient: string, system: string, code: string, name: string, site: string): R {
  const coding = code ? [{ system, code, ...(name ? { display: name } : {}) }] : [];
  const concept: R = { coding, ...(name ? { text: name } : {}) };
  const subject = { reference: `Patient/${patient}` };
  if (kind === 'drug') {
    return { resourceType: 'MedicationRequest', status: 'draft', intent: 'order', subject, medicationCodeableConcept: concept, authoredOn: today() };
  }
  const r: R = { resourceType: 'ServiceRequest', status: 'draft', intent: 'order', subject, authoredOn: today() };
  if (coding.length || name) r.code = concept;
  if (kind === 'imaging') {
    r.category = [{ coding: [{ system: SNOMED, code: '363679005', display: 'Imaging' }] }];
    if (site) r.bodySite = [{ text: site }];
  } else {
    r.category = [{ coding: [{ system: SNOMED, code: '108252007', display: 'Laboratory procedure' }] }];
  }
  return r;
}

function describe(r: R): string {
  switch (r.resourceType) {
    case 'MedicationRequest':
      return ccText(r.medicationCodeableConcept);
    case 'ImagingStudy':
      return [(r.modality || []).map((m: R) => m.code).join('/'), r.description].filter(Boolean).join(' ');
    case 'Observation': {
      const q = r.valueQuantity;
      return `${ccText(r.code)}${q ? ` ${q.value} ${q.unit || ''}` : ''}`.trim();
    }
    default:
      return ccText(r.code);
  }
}

async function issueView(d: R): Promise<HTMLElement> {
  const orgs = await organizations();
  const refs: string[] = (d.implicated || []).map((x: R) => x.reference).filter((x: unknown) => typeof x === 'string').slice(0, 10);
  const earlier = await Promise.all(
    refs.map(async (ref) => {
      try {
        return await fhir<R>(`/fhir/${ref.split('/').map(encodeURIComponent).join('/')}`);
      } catch {
        return null;
      }
    }),
  );
  const rows = earlier.filter((r): r is R => !!r);
  return h(
    'article',
    { class: `issue sev-${d.severity || 'moderate'}`, role: 'alert', 'data-testid': 'duplicate-warning' },
    h('h2', null, h('span', { class: 'badge warn' }, t('duplicateFound')), d.severity ? ` ${tx(`sev_${d.severity}`, d.severity)}` : ''),
    h('p', { class: 'detail' }, d.detail || ''),
    rows.length
      ? h(
          'table',
          null,
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('earlierRecord')), h('th', { scope: 'col' }, t('recordedBy')), h('th', { scope: 'col' }, t('date')))),
          h(
            'tbody',
            null,
            rows.map((r) =>
              h(
                'tr',
                null,
                h('td', null, h('span', { class: 'kind' }, tx(`kind_${r.resourceType}`, r.resourceType)), ' ', describe(r)),
                h('td', { class: 'earlier-facility' }, facilityName(r, orgs)),
                h('td', { class: 'earlier-date' }, h('time', { datetime: clinicalDate(r) }, fmtDate(clinicalDate(r)))),
              ),
            ),
          ),
        )
      : null,
  );
}

export async function renderOrder(main: HTMLElement, patient: string): Promise<void> {
  const pid = nextId('pid');
  const sys = nextId('sys');
  const cid = nextId('code');
  const nid = nextId('name');
  const site = nextId('site');
  const dl = nextId('codes');
  const out = h('div', { class: 'results', 'aria-live': 'polite', 'data-testid': 'check-results' });
  const patientIn = h('input', { id: pid, name: 'patient', required: true, inputmode: 'numeric', autocomplete: 'off', value: patient });
  const sysSel = h('select', { id: sys, name: 'system' });
  const codeIn = h('input', { id: cid, name: 'code', list: dl, autocomplete: 'off', spellcheck: 'false', 'data-testid': 'order-code' });
  const nameIn = h('input', { id: nid, name: 'display', autocomplete: 'off' });
  const siteIn = h('input', { id: site, name: 'site', autocomplete: 'off' });
  const siteRow = h('div', { class: 'field' }, h('label', { for: site }, t('bodySite')), siteIn);
  const datalist = h('datalist', { id: dl });
  let kind: Kind = 'lab';
  const setKind = (k: Kind) => {
    kind = k;
    fill(sysSel, SYSTEMS[k].map(([v, label]) => h('option', { value: v }, label)));
    fill(datalist, SUGGEST[k].map(([v, label]) => h('option', { value: v }, label)));
    siteRow.hidden = k !== 'imaging';
    codeIn.required = k !== 'imaging';
    siteIn.required = k === 'imaging';
  };
  const radios = (['lab', 'drug', 'imaging'] as Kind[]).map((k) => {
    const id = nextId('kind');
    const r = h('input', {
      type: 'radio',
      name: 'kind',
      id,
      value: k,
      checked: k === 'lab',
      onchange: () => {
        // another kind of order: the code, name and site of the last one no longer apply
        codeIn.value = '';
        nameIn.value = '';
        siteIn.value = '';
        fill(out);
        setKind(k);
      },
    });
    return h('div', { class: 'radio' }, r, h('label', { for: id }, t(`order_${k}` as Key)));
  });
  setKind('lab');
  // a suggestion picked from the list fills the name
  codeIn.addEventListener('change', () => {
    const s = SUGGEST[kind].find(([v]) => v === codeIn.value.trim());
    if (s && !nameIn.value) nameIn.value = s[1];
  });
  const form = h(
    'form',
    {
      class: 'order-form',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const p = patientIn.value.trim();
        const code = codeIn.value.trim();
        if (!p) return;
        fill(out, h('p', { class: 'loading' }, t('loading')));
        const res = resourceFor(kind, p, sysSel.value, code, nameIn.value.trim(), siteIn.value.trim());
        try {
          const b = await fhir<R>(`/fhir/${res.resourceType}/$check`, { method: 'POST', body: res });
          const issues: R[] = (b.entry || []).map((e: R) => e.resource).filter((r: R) => r && r.resourceType === 'DetectedIssue');
          if (!issues.length) {
            fill(out, h('p', { class: 'ok', role: 'status', 'data-testid': 'no-duplicate' }, t('noDuplicate')));
          } else {
            fill(out, ...(await Promise.all(issues.map(issueView))));
          }
        } catch (e) {
          fill(out, errorBox(e));
        }
      },
    },
    h('div', { class: 'field' }, h('label', { for: pid }, t('regionalId')), patientIn),
    h('fieldset', null, h('legend', null, t('orderKind')), h('div', { class: 'radios' }, radios)),
    h('div', { class: 'field' }, h('label', { for: sys }, t('codeSystem')), sysSel),
    h('div', { class: 'field' }, h('label', { for: cid }, t('code')), codeIn, datalist),
    h('div', { class: 'field' }, h('label', { for: nid }, t('codeName')), nameIn),
    siteRow,
    h('button', { type: 'submit', class: 'primary' }, t('check')),
  );
  fill(
    main,
    h(
      'section',
      { class: 'card order' },
      h('h1', null, t('orderTitle')),
      h('p', { class: 'hint' }, t('orderIntro')),
      patient ? h('p', null, h('a', { href: `#/patient/${encodeURIComponent(patient)}` }, t('backToPatient'))) : null,
      form,
      out,
    ),
  );
  pageShown(t('orderTitle'));
  (patient ? codeIn : patientIn).focus();
}
