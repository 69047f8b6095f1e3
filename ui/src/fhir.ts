// Reading FHIR R4 resources of the node: names, codes, dates, the recording facility.

export type R = Record<string, any>;

export const RECORDING_FACILITY = 'http://renkei.invalid/fhir/StructureDefinition/recording-facility';
export const THUMBNAIL = 'http://renkei.invalid/fhir/StructureDefinition/thumbnail';
export const REGIONAL_ID = 'http://renkei.invalid/fhir/sid/regional-patient-id';
const EN_REPR = 'http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation';
const SOURCE_PREFIX = 'urn:renkei:facility:';

export const LOINC = 'http://loinc.org';
export const JLAC10 = 'http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS';
export const YJ = 'urn:oid:1.2.392.100495.20.1.73';
export const HOT9 = 'urn:oid:1.2.392.200119.4.403.1';
export const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
export const SNOMED = 'http://snomed.info/sct';

function ext(r: R, url: string): R | undefined {
  return Array.isArray(r.extension) ? r.extension.find((x: R) => x && x.url === url) : undefined;
}

function orgCode(ref: R | undefined): string | null {
  const s = ref && typeof ref.reference === 'string' ? ref.reference : '';
  const m = /(?:^|\/)Organization\/([^/]+)$/.exec(s);
  return m ? decodeURIComponent(m[1]) : null;
}

/** The code of the facility that recorded a resource (extension, meta.source, or an Organization actor). */
export function facilityOf(r: R): string | null {
  const x = ext(r, RECORDING_FACILITY);
  const fromExt = x && orgCode(x.valueReference);
  if (fromExt) return fromExt;
  const src = r.meta && typeof r.meta.source === 'string' ? r.meta.source : '';
  if (src.startsWith(SOURCE_PREFIX)) return src.slice(SOURCE_PREFIX.length);
  for (const f of ['recorder', 'requester', 'asserter', 'author', 'custodian', 'serviceProvider', 'performer']) {
    const v = r[f];
    const refs: R[] = Array.isArray(v) ? v : v ? [v] : [];
    for (const ref of refs) {
      const c = orgCode(ref) || orgCode(ref.actor);
      if (c) return c;
    }
  }
  return null;
}

/** The facility name a resource carries itself (the extension's display), if any. */
export function facilityDisplay(r: R): string | null {
  const x = ext(r, RECORDING_FACILITY);
  return (x && x.valueReference && x.valueReference.display) || null;
}

/** Text of a CodeableConcept. */
export function ccText(cc: R | undefined): string {
  if (!cc) return '';
  if (typeof cc.text === 'string' && cc.text.trim()) return cc.text.trim();
  const cs: R[] = Array.isArray(cc.coding) ? cc.coding : [];
  for (const c of cs) if (c.display) return String(c.display);
  for (const c of cs) if (c.code) return String(c.code);
  return '';
}

/** `system|code` of the first coding. */
export function codeKey(cc: R | undefined): string {
  const c = cc && Array.isArray(cc.coding) ? cc.coding.find((x: R) => x && x.code) : undefined;
  return c ? `${c.system || ''}|${c.code}` : ccText(cc);
}

/** The clinical date of a resource (what the timeline sorts by). */
export function clinicalDate(r: R): string {
  const pick = (...vs: unknown[]) => (vs.find((v) => typeof v === 'string' && v) as string) || '';
  switch (r.resourceType) {
    case 'Encounter':
      return pick(r.period?.start, r.period?.end);
    case 'Condition':
      return pick(r.onsetDateTime, r.onsetPeriod?.start, r.recordedDate);
    case 'Observation':
      return pick(r.effectiveDateTime, r.effectivePeriod?.start, r.effectiveInstant, r.issued);
    case 'MedicationRequest':
      return pick(r.authoredOn);
    case 'AllergyIntolerance':
      return pick(r.recordedDate, r.onsetDateTime);
    case 'DocumentReference':
      return pick(r.date, r.context?.period?.start);
    case 'ServiceRequest':
      return pick(r.occurrenceDateTime, r.authoredOn);
    case 'ImagingStudy':
      return pick(r.started);
    case 'DetectedIssue':
      return pick(r.identifiedDateTime);
    default:
      return pick(r.meta?.lastUpdated);
  }
}

/** Code-point order of two strings (ISO dates sort as text; cheaper than localeCompare). */
export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface Names {
  kanji: string;
  kana: string;
}

function nameText(n: R | undefined): string {
  if (!n) return '';
  if (typeof n.text === 'string' && n.text.trim()) return n.text.trim();
  return [n.family, ...(Array.isArray(n.given) ? n.given : [])].filter(Boolean).join(' ');
}

/** Kanji (IDE or the first name) and kana (SYL) names of a Patient. */
export function patientNames(p: R): Names {
  const names: R[] = Array.isArray(p.name) ? p.name : [];
  const repr = (n: R) => ext(n, EN_REPR)?.valueCode;
  const kana = names.find((n) => repr(n) === 'SYL');
  const kanji = names.find((n) => repr(n) === 'IDE') || names.find((n) => n !== kana);
  return { kanji: nameText(kanji), kana: nameText(kana) };
}

export function regionalIdOf(p: R): string {
  const ids: R[] = Array.isArray(p.identifier) ? p.identifier : [];
  return ids.find((i) => i.system === REGIONAL_ID)?.value || p.id || '';
}

/** Whole years between a birth date and now. */
export function ageOf(birth: string | undefined, now = new Date()): number | null {
  const m = birth ? /^(\d{4})-(\d{2})-(\d{2})/.exec(birth) : null;
  if (!m) return null;
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const d = Number(m[3]);
  let age = now.getFullYear() - y;
  if (now.getMonth() + 1 < mo || (now.getMonth() + 1 === mo && now.getDate() < d)) age -= 1;
  return age;
}

/** An Organization's phone number. */
export function phoneOf(o: R): string {
  const t: R[] = Array.isArray(o.telecom) ? o.telecom : [];
  return t.find((c) => c.system === 'phone')?.value || '';
}

/** Whether an AllergyIntolerance is current. */
export function allergyActive(a: R): boolean {
  const c = codeKey(a.clinicalStatus).split('|').pop();
  const v = codeKey(a.verificationStatus).split('|').pop();
  return c !== 'inactive' && c !== 'resolved' && v !== 'refuted' && v !== 'entered-in-error';
}

/** Whether a DetectedIssue is still open. */
export function issueOpen(d: R): boolean {
  return !['cancelled', 'entered-in-error'].includes(d.status) && !d.mitigation?.length;
}

const DAY = 86_400_000;
function durationMs(d: R | undefined): number | null {
  if (!d || typeof d.value !== 'number') return null;
  const u = String(d.code || d.unit || '');
  const per: Record<string, number> = { h: DAY / 24, d: DAY, wk: 7 * DAY, mo: 30 * DAY, a: 365 * DAY, 日: DAY, 週: 7 * DAY, 月: 30 * DAY, 年: 365 * DAY };
  const k = Object.keys(per).find((x) => x === u || `${x}s` === u) ?? ({ day: 'd', days: 'd', week: 'wk', weeks: 'wk', month: 'mo', months: 'mo', year: 'a', years: 'a', hour: 'h', hours: 'h' } as Record<string, string>)[u];
  return k && per[k] !== undefined ? d.value * per[k] : null;
}

/** The end of a prescription (validity end, or start + supply/bounds duration), as ms. */
export function prescriptionEnd(m: R): number | null {
  const vEnd = m.dispenseRequest?.validityPeriod?.end;
  if (vEnd) return new Date(vEnd).getTime();
  const start = m.authoredOn ? new Date(m.authoredOn).getTime() : NaN;
  if (Number.isNaN(start)) return null;
  const sup = durationMs(m.dispenseRequest?.expectedSupplyDuration);
  if (sup !== null) return start + sup;
  const bounds = (Array.isArray(m.dosageInstruction) ? m.dosageInstruction : [])
    .map((di: R) => durationMs(di.timing?.repeat?.boundsDuration))
    .filter((x: number | null): x is number => x !== null);
  return bounds.length ? start + Math.max(...bounds) : null;
}

/** Whether a MedicationRequest is active now. */
export function medActive(m: R, now = Date.now()): boolean {
  if (m.status !== 'active') return false;
  const end = prescriptionEnd(m);
  return end === null || end >= now - DAY;
}

/** Dose text of a MedicationRequest. */
export function doseText(m: R): string {
  const di: R[] = Array.isArray(m.dosageInstruction) ? m.dosageInstruction : [];
  const parts: string[] = [];
  for (const d of di) {
    if (d.text) {
      parts.push(d.text);
      continue;
    }
    const dose = d.doseAndRate?.[0]?.doseQuantity;
    const p = [dose ? `${dose.value} ${dose.unit || ''}`.trim() : '', ccText(d.route), ccText(d.timing?.code)].filter(Boolean);
    if (p.length) parts.push(p.join(' '));
  }
  return parts.join('; ');
}

export type Flag = 'H' | 'L' | 'A' | null;

/** An Observation's out-of-range flag: its interpretation, else its reference range. */
export function obsFlag(o: R): Flag {
  for (const i of Array.isArray(o.interpretation) ? o.interpretation : []) {
    for (const c of Array.isArray(i.coding) ? i.coding : []) {
      const k = String(c.code || '');
      if (['H', 'HH', 'HU', '>'].includes(k)) return 'H';
      if (['L', 'LL', 'LU', '<'].includes(k)) return 'L';
      if (['A', 'AA'].includes(k)) return 'A';
      if (k === 'N') return null;
    }
  }
  const v = o.valueQuantity?.value;
  const rr = Array.isArray(o.referenceRange) ? o.referenceRange[0] : undefined;
  if (typeof v !== 'number' || !rr) return null;
  if (typeof rr.high?.value === 'number' && v > rr.high.value) return 'H';
  if (typeof rr.low?.value === 'number' && v < rr.low.value) return 'L';
  return null;
}

/** Reference range text. */
export function rangeText(o: R): string {
  const rr = Array.isArray(o.referenceRange) ? o.referenceRange[0] : undefined;
  if (!rr) return '';
  if (rr.text) return rr.text;
  const lo = rr.low?.value;
  const hi = rr.high?.value;
  if (lo === undefined && hi === undefined) return '';
  return `${lo ?? ''}–${hi ?? ''}`;
}

/** A value of an Observation as text (quantity, string, codeable). */
export function valueText(o: R): string {
  if (o.valueQuantity) {
    const q = o.valueQuantity;
    return `${q.comparator || ''}${q.value ?? ''} ${q.unit || q.code || ''}`.trim();
  }
  if (typeof o.valueString === 'string') return o.valueString;
  if (o.valueCodeableConcept) return ccText(o.valueCodeableConcept);
  if (typeof o.valueBoolean === 'boolean') return String(o.valueBoolean);
  if (typeof o.valueInteger === 'number') return String(o.valueInteger);
  return '';
}
