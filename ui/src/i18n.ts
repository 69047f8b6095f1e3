// Japanese and English strings, the language choice, and local date/number formats.

export type Lang = 'ja' | 'en';

// [Japanese, English]; {name} placeholders.
const S = {
  app: ['連携 地域医療記録', 'Renkei regional record'],
  skip: ['本文へ移動', 'Skip to content'],
  signin: ['サインイン', 'Sign in'],
  signinIntro: [
    '施設から発行されたアクセストークンを入力してください。トークンはこのタブを閉じると消去されます。',
    'Enter the access token your facility issued. It is kept only until this tab is closed.',
  ],
  token: ['アクセストークン', 'Access token'],
  signout: ['サインアウト', 'Sign out'],
  signedOut: ['サインアウトしました', 'Signed out'],
  sessionEnded: ['セッションが無効になりました。再度サインインしてください。', 'Your session ended. Please sign in again.'],
  language: ['言語', 'Language'],
  switchLang: ['English', '日本語'],
  switchLangLabel: ['Switch to English', '日本語に切り替え'],
  nav: ['メニュー', 'Menu'],
  navCheckin: ['受付', 'Check-in'],
  navOrder: ['オーダー重複確認', 'Order check'],
  navEms: ['救急', 'EMS'],
  signedInAs: ['サインイン中', 'Signed in'],
  regionalAdmin: ['地域管理者', 'Regional administrator'],
  noFacility: ['施設なし', 'no facility'],
  loading: ['読み込み中…', 'Loading…'],
  error: ['エラー', 'Error'],
  retry: ['再試行', 'Retry'],
  notFound: ['ページが見つかりません', 'Page not found'],
  denied: ['アクセスが拒否されました', 'Access denied'],
  role_doctor: ['医師', 'Doctor'],
  role_nurse: ['看護師', 'Nurse'],
  role_technologist: ['技師', 'Technologist'],
  role_pharmacist: ['薬剤師', 'Pharmacist'],
  'role_ems-crew': ['救急隊員', 'EMS crew'],
  'role_facility-admin': ['施設管理者', 'Facility administrator'],
  'role_regional-admin': ['地域管理者', 'Regional administrator'],

  checkinTitle: ['受付（カード）', 'Check-in by card'],
  checkinIntro: [
    '連携カードをリーダーで読み取るか、番号を入力して Enter を押してください。受付すると、この施設と患者さんの診療関係が開かれます。',
    'Scan the patient’s regional card or type its number and press Enter. Check-in opens your facility’s treating relationship with the patient.',
  ],
  cardNumber: ['カード番号', 'Card number'],
  cardHint: ['16桁（スペース・ハイフンは無視されます）', '16 digits (spaces and hyphens are ignored)'],
  checkin: ['受付して開く', 'Check in and open'],
  checkedIn: ['受付しました', 'Checked in'],
  relationshipUntil: ['診療関係の期限: {date}', 'Treating relationship until {date}'],
  openByRegionalId: ['地域患者IDで開く', 'Open by regional ID'],
  regionalId: ['地域患者ID', 'Regional ID'],
  open: ['開く', 'Open'],

  patient: ['患者', 'Patient'],
  age: ['{n}歳', '{n} y'],
  birthDate: ['生年月日', 'Born'],
  sex: ['性別', 'Sex'],
  sex_male: ['男性', 'male'],
  sex_female: ['女性', 'female'],
  sex_other: ['その他', 'other'],
  sex_unknown: ['不明', 'unknown'],
  alerts: ['注意情報', 'Alerts'],
  allergy: ['アレルギー', 'Allergy'],
  criticality: ['重篤度: {c}', 'criticality: {c}'],
  crit_high: ['高', 'high'],
  crit_low: ['低', 'low'],
  'crit_unable-to-assess': ['評価不能', 'unable to assess'],
  detectedIssue: ['重複警告', 'Duplicate alert'],
  sev_high: ['重大', 'high'],
  sev_moderate: ['中等度', 'moderate'],
  sev_low: ['軽度', 'low'],
  noAlerts: ['アレルギー・未解決の警告はありません', 'No allergies or open alerts recorded'],

  timeline: ['経過（全施設）', 'Timeline (all facilities)'],
  kind: ['種類', 'Kind'],
  facility: ['施設', 'Facility'],
  all: ['すべて', 'All'],
  showing: ['{n} / {m} 件を表示', 'Showing {n} of {m}'],
  showMore: ['さらに表示', 'Show more'],
  nothing: ['該当する記録はありません', 'No matching records'],
  kind_Encounter: ['受診', 'Visit'],
  kind_Condition: ['診断', 'Diagnosis'],
  kind_MedicationRequest: ['処方', 'Prescription'],
  kind_Observation: ['検査結果', 'Lab result'],
  kind_DocumentReference: ['文書', 'Document'],
  kind_ImagingStudy: ['画像検査', 'Imaging study'],
  kind_AllergyIntolerance: ['アレルギー', 'Allergy'],
  kind_ServiceRequest: ['オーダー', 'Order'],
  kind_DetectedIssue: ['重複警告', 'Duplicate alert'],
  openDocument: ['文書を開く', 'Open document'],
  series: ['{n} シリーズ', '{n} series'],
  images: ['{n} 画像', '{n} images'],
  since: ['{date} から', 'since {date}'],
  until: ['{date} まで', 'until {date}'],
  unknownFacility: ['（施設不明）', '(unknown facility)'],

  labs: ['検査結果', 'Laboratory results'],
  test: ['検査項目', 'Test'],
  latest: ['最新値', 'Latest'],
  date: ['日付', 'Date'],
  refRange: ['基準範囲', 'Reference range'],
  trend: ['推移', 'Trend'],
  count: ['件数', 'Results'],
  high: ['高値', 'high'],
  low: ['低値', 'low'],
  abnormal: ['異常', 'abnormal'],
  trendOf: ['{test} の推移: {values}', '{test} trend: {values}'],
  noLabs: ['検査結果はありません', 'No laboratory results'],

  meds: ['服用中の薬', 'Active medications'],
  prescribedBy: ['処方: {facility}（{date}）', 'Prescribed by {facility} on {date}'],
  noMeds: ['服用中の薬はありません', 'No active medications'],

  imaging: ['画像検査', 'Imaging studies'],
  openViewer: ['ビューアで開く', 'Open viewer'],
  openOhif: ['外部ビューアで開く', 'Open in viewer'],
  noImaging: ['画像検査はありません', 'No imaging studies'],
  thumbnailOf: ['{what} のサムネイル', 'Thumbnail of {what}'],
  noThumbnail: ['サムネイルなし', 'No thumbnail'],

  viewer: ['画像ビューア', 'Image viewer'],
  close: ['閉じる', 'Close'],
  seriesLabel: ['シリーズ', 'Series'],
  window: ['ウィンドウ', 'Window'],
  win_default: ['標準', 'Default'],
  win_brain: ['脳 40/80', 'Brain 40/80'],
  win_lung: ['肺 −600/1500', 'Lung −600/1500'],
  win_bone: ['骨 300/1500', 'Bone 300/1500'],
  win_abdomen: ['腹部 40/400', 'Abdomen 40/400'],
  prev: ['前の画像', 'Previous image'],
  next: ['次の画像', 'Next image'],
  play: ['再生', 'Play'],
  pause: ['停止', 'Pause'],
  position: ['画像位置', 'Image position'],
  imageOf: ['画像 {i} / {n}', 'Image {i} of {n}'],
  viewerHelp: [
    'ホイール・矢印キーで画像送り、スペースで再生／停止、Esc で閉じる',
    'Wheel or arrow keys: scroll through images · Space: play/pause · Esc: close',
  ],
  imageError: ['画像を表示できません: {e}', 'Cannot show the image: {e}'],

  orderTitle: ['オーダー前の重複確認', 'Duplicate check before ordering'],
  orderIntro: [
    '検査・画像・処方をオーダーする前に、他施設を含めた最近の記録と重複していないか確認します（何も登録されません）。',
    'Before ordering a test, imaging or a drug, check it against recent records from every facility (nothing is stored).',
  ],
  orderKind: ['オーダーの種類', 'Order kind'],
  order_lab: ['検体検査', 'Lab test'],
  order_drug: ['処方', 'Drug'],
  order_imaging: ['画像検査', 'Imaging'],
  codeSystem: ['コード体系', 'Code system'],
  code: ['コード', 'Code'],
  codeName: ['名称（任意）', 'Name (optional)'],
  bodySite: ['部位', 'Body site'],
  check: ['重複を確認', 'Check for duplicates'],
  noDuplicate: ['重複は見つかりませんでした。オーダーできます。', 'No duplicate found: you may order.'],
  duplicateFound: ['重複の可能性があります', 'Possible duplicate'],
  earlierRecord: ['以前の記録', 'Earlier record'],
  recordedBy: ['記録施設', 'Recorded by'],
  backToPatient: ['患者ページへ戻る', 'Back to the patient'],
  orderCheckLink: ['オーダー重複確認', 'Order check'],

  emsTitle: ['救急：緊急アクセス', 'EMS: emergency access'],
  emsIntro: [
    '患者さんの連携カード番号と、緊急アクセス（ブレークグラス）の理由を入力してください。アクセスはすべて記録されます。',
    'Enter the patient’s regional card number and the reason for emergency access (break-glass). Every access is recorded.',
  ],
  reason: ['理由（必須）', 'Reason (required)'],
  reasonHint: ['例: 意識障害で搬送中', 'e.g. unconscious patient, en route'],
  reason_arrest: ['心肺停止', 'Cardiac arrest'],
  reason_unconscious: ['意識障害', 'Unconscious patient'],
  reason_trauma: ['重症外傷', 'Major trauma'],
  reason_breathing: ['呼吸困難', 'Respiratory distress'],
  breakGlass: ['緊急アクセスを開始', 'Start emergency access'],
  reasonRequired: ['理由を入力してください', 'Enter a reason'],
  cardRequired: ['カード番号を入力してください', 'Enter the card number'],
  emsDenied: [
    '緊急アクセス（ブレークグラス）なしでは救急サマリーを表示できません。',
    'The emergency summary needs emergency access (break-glass) first.',
  ],
  summaryTitle: ['救急サマリー', 'Emergency summary'],
  timerLabel: ['緊急アクセス残り時間', 'Emergency access time left'],
  timerExpired: ['緊急アクセスの期限が切れました', 'Emergency access has expired'],
  timerUnknown: ['緊急アクセス中', 'Emergency access active'],
  conditions: ['病名', 'Conditions'],
  allergies: ['アレルギー', 'Allergies'],
  recentLabs: ['最近の検査', 'Recent labs'],
  lastStudies: ['最近の画像検査', 'Last imaging studies'],
  facilities: ['関係施設（連絡先）', 'Facilities (phone)'],
  noPhone: ['電話番号なし', 'no phone on file'],
  noneRecorded: ['記録なし', 'None recorded'],
  newPatient: ['別の患者', 'Another patient'],
} as const;

export type Key = keyof typeof S;

let current: Lang = pickLang();

function pickLang(): Lang {
  try {
    const saved = localStorage.getItem('renkei.lang');
    if (saved === 'ja' || saved === 'en') return saved;
  } catch {
    /* storage blocked */
  }
  const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  for (const l of prefs) {
    const p = (l || '').toLowerCase();
    if (p.startsWith('ja')) return 'ja';
    if (p.startsWith('en')) return 'en';
  }
  return 'en';
}

export function lang(): Lang {
  return current;
}

export function setLang(l: Lang): void {
  current = l;
  try {
    localStorage.setItem('renkei.lang', l);
  } catch {
    /* storage blocked */
  }
  document.documentElement.lang = l;
}

/** A UI string. */
export function t(key: Key, vars?: Record<string, string | number>): string {
  const pair = S[key];
  let s: string = pair ? pair[current === 'ja' ? 0 : 1] : key;
  if (vars) {
    for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
  }
  return s;
}

/** A UI string whose key is built at run time (falls back to the raw value). */
export function tx(key: string, fallback: string): string {
  return key in S ? t(key as Key) : fallback;
}

/** The locale for dates and numbers: the UI language, in the browser's regional variant. */
export function locale(): string {
  const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  const match = prefs.find((l) => l && l.toLowerCase().startsWith(current));
  return match || (current === 'ja' ? 'ja-JP' : 'en-US');
}

const fmtCache = new Map<string, Intl.DateTimeFormat>();
function fmt(opts: Intl.DateTimeFormatOptions, tag: string): Intl.DateTimeFormat {
  const k = `${locale()}|${tag}`;
  let f = fmtCache.get(k);
  if (!f) {
    f = new Intl.DateTimeFormat(locale(), opts);
    fmtCache.set(k, f);
  }
  return f;
}

/** A FHIR date / dateTime / instant as a Date (a plain date at local midnight). */
export function parseDate(v: string | undefined | null): Date | null {
  if (!v) return null;
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/.exec(v);
  if (m) return new Date(Number(m[1]), m[2] ? Number(m[2]) - 1 : 0, m[3] ? Number(m[3]) : 1);
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A date in the local format (year-only and year-month FHIR dates stay partial). */
export function fmtDate(v: string | Date | undefined | null): string {
  if (!v) return '';
  if (typeof v === 'string') {
    if (/^\d{4}$/.test(v)) return v;
    if (/^\d{4}-\d{2}$/.test(v)) {
      const d = parseDate(v);
      return d ? fmt({ year: 'numeric', month: 'short' }, 'ym').format(d) : v;
    }
  }
  const d = typeof v === 'string' ? parseDate(v) : v;
  return d ? fmt({ year: 'numeric', month: 'short', day: 'numeric' }, 'd').format(d) : String(v);
}

/** Date and time in the local format. */
export function fmtDateTime(v: string | Date | number): string {
  const d = typeof v === 'string' ? parseDate(v) : new Date(v);
  return d
    ? fmt({ year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }, 'dt').format(d)
    : '';
}

/** A number in the local format. */
export function fmtNum(n: number): string {
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: 3 }).format(n);
}
