// Browser tests of the pages at /ui/ (issue 8), in headless Debian chromium driven by
// playwright-core. Run by pacs-node/tests/ui_browser.rs, which starts a node and records
// the data; it passes:
//   NODE_URL, CHROMIUM, DOCTOR_TOKEN (doctor at hospital C), OTHER_TOKEN (doctor at a
//   facility without a treating relationship), EMS_TOKEN, CARD, PATIENT (regional ID),
//   STUDY (the CT's Study Instance UID), FACILITIES (the three names, comma-separated),
//   SCREENSHOTS (folder), and for the first-render figures PERF_PATIENT / PERF_RECORDS /
//   PERF_YEARS.
// Prints one line per check and "N passed, M failed"; exits 1 on any failure.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const URL_ = env('NODE_URL').replace(/\/$/, '');
const CARD = env('CARD');
const PATIENT = env('PATIENT');
const STUDY = env('STUDY');
const FACILITIES = env('FACILITIES').split(',');
const SHOTS = env('SCREENSHOTS', '');
const TIMEOUT = 15_000;

let passed = 0;
let failed = 0;
const results = [];

/** Run the checks of one flow; the first failing one ends the flow. */
async function flow(name, fn) {
  const ctx = { step: 0 };
  const check = async (what, f) => {
    ctx.step += 1;
    const t0 = Date.now();
    try {
      await f();
      passed += 1;
      console.log(`ok - ${name}: ${what} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`not ok - ${name}: ${what}\n  ${String(e && e.stack ? e.stack : e).split('\n').slice(0, 6).join('\n  ')}`);
      if (current) {
        const seen = await current.locator('body').innerText().catch(() => '');
        console.log(`  page ${current.url()} shows:\n    ${seen.slice(0, 1500).split('\n').join('\n    ')}`);
        if (current.errors.length) console.log(`  script errors: ${current.errors.join('; ')}`);
        await current.screenshot({ path: `/tmp/renkei-ui-fail-${name}-${ctx.step}.png` }).catch(() => {});
      }
      throw new Skip();
    }
  };
  try {
    await fn(check);
  } catch (e) {
    if (!(e instanceof Skip)) {
      failed += 1;
      console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
}
class Skip extends Error {}
/** The page of the flow running (shown when a check fails). */
let current = null;

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--disable-extensions'],
});

/** A page that records requests to anywhere but the node, and script errors. */
async function newPage(options) {
  const context = await browser.newContext({ ...options });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.external = [];
  page.errors = [];
  page.renders = [];
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(URL_) && !u.startsWith('blob:') && !u.startsWith('data:')) page.external.push(u);
    if (u.includes('/rendered')) page.renders.push(u);
  });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  current = page;
  return { context, page };
}

async function signIn(page, token) {
  await page.goto(`${URL_}/ui/`);
  await page.locator('input[name=token]').fill(token);
  await page.locator('form button[type=submit]').click();
  await page.getByTestId('whoami').waitFor();
}

function shot(page, name, opts = {}) {
  if (!SHOTS) return Promise.resolve();
  mkdirSync(SHOTS, { recursive: true });
  return page.screenshot({ path: join(SHOTS, name), ...opts });
}

// ---------------------------------------------------------------- clinician (English)
await flow('clinician', async (check) => {
  const { context, page } = await newPage({ locale: 'en-US', viewport: { width: 1280, height: 900 } });
  await check('/ui redirects to /ui/ and asks for a token, in English', async () => {
    const r = await page.goto(`${URL_}/ui`);
    assert(r.ok(), `status ${r.status()}`);
    assert(page.url() === `${URL_}/ui/`, page.url());
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.getByLabel('Access token').waitFor();
    assert((await page.locator('html').getAttribute('lang')) === 'en', 'lang=en');
  });
  await check('a wrong token is refused with the node’s reason', async () => {
    await page.getByLabel('Access token').fill('rk_0000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const err = page.getByRole('alert');
    await err.waitFor();
    const text = await err.innerText();
    assert(/token/i.test(text), text);
  });
  await check('sign in: the header shows who and which facility', async () => {
    await page.getByLabel('Access token').fill(env('DOCTOR_TOKEN'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    const who = page.getByTestId('whoami');
    await who.waitFor();
    const text = await who.innerText();
    assert(text.includes('田中 花子') && text.includes('市立中央病院') && text.includes('Doctor'), text);
    await page.getByRole('heading', { name: 'Check-in by card' }).waitFor();
  });
  await check('check-in by card: a keyboard-wedge scan (digits + Enter) opens the patient', async () => {
    const input = page.getByLabel('Card number');
    await input.focus();
    assert((await page.evaluate(() => document.activeElement?.getAttribute('name'))) === 'card', 'card input has focus');
    await page.keyboard.type(CARD.replace(/(\d{4})(?=\d)/g, '$1 '), { delay: 5 });
    await page.keyboard.press('Enter');
    await page.getByTestId('patient-header').waitFor();
    assert(page.url().endsWith(`#/patient/${PATIENT}`), page.url());
    const head = await page.getByTestId('patient-header').innerText();
    for (const s of ['山田 太郎', 'ヤマダ タロウ', PATIENT, 'male', ' y)']) assert(head.includes(s), `${s} in ${head}`);
  });
  await check('alert banner: the allergy and the open DetectedIssue', async () => {
    const text = await page.getByTestId('alerts').innerText();
    assert(text.includes('ペニシリン') && text.includes('Allergy'), text);
    assert(text.includes('Duplicate alert') && /atorvastatin|アトルバスタチン/.test(text), text);
  });
  await check('timeline: records of three facilities, filterable by facility and kind', async () => {
    const tl = page.getByTestId('timeline');
    const text = await tl.innerText();
    for (const f of FACILITIES) assert(text.includes(f), `${f} in the timeline`);
    const codes = await tl.locator('li').evaluateAll((ls) => [...new Set(ls.map((l) => l.dataset.facility))]);
    assert(codes.length >= 3, `facilities ${codes}`);
    const kinds = await tl.locator('li').evaluateAll((ls) => [...new Set(ls.map((l) => l.dataset.kind))]);
    for (const k of ['Encounter', 'Condition', 'MedicationRequest', 'Observation', 'DocumentReference', 'ImagingStudy']) {
      assert(kinds.includes(k), `${k} in ${kinds}`);
    }
    await page.getByLabel('Facility').selectOption({ label: FACILITIES[1] });
    const onlyB = await tl.locator('li').evaluateAll((ls) => [...new Set(ls.map((l) => l.dataset.facility))]);
    assert(onlyB.length === 1 && onlyB[0] === '1310000002', `after the facility filter: ${onlyB}`);
    await page.getByLabel('Kind').selectOption({ label: 'Lab result' });
    const labs = await tl.locator('li').evaluateAll((ls) => ls.map((l) => l.dataset.kind));
    assert(labs.length === 10 && labs.every((k) => k === 'Observation'), `after the kind filter: ${labs}`);
    await page.getByLabel('Facility').selectOption('');
    await page.getByLabel('Kind').selectOption('');
  });
  await check('lab table: a sparkline per test, out-of-range values marked', async () => {
    const row = page.getByTestId('labs').locator('tr[data-test="HbA1c"]');
    await row.locator('svg.spark polyline').waitFor();
    const cell = await row.locator('td.val').innerText();
    assert(cell.includes('7.8') && cell.includes('H'), cell);
    assert(await row.locator('td.val.flag-H').count(), 'flag-H class');
    assert((await row.locator('svg.spark circle.oor').count()) >= 4, 'out-of-range points on the sparkline');
    const label = await row.locator('svg.spark').getAttribute('aria-label');
    assert(label && label.includes('HbA1c'), `label ${label}`);
  });
  await check('active medications with the prescribing facility', async () => {
    const text = await page.getByTestId('meds').innerText();
    assert(text.includes('メトホルミン') && text.includes('あおぞら内科クリニック'), text);
    assert(text.includes('ロスバスタチン') && text.includes('市立中央病院'), text);
  });
  await check('imaging: the CT thumbnail (WADO-RS, fetched with the token) and the viewer link', async () => {
    const img = page.getByTestId('thumbnail').first();
    await img.waitFor();
    await page.waitForFunction(() => {
      const i = document.querySelector('[data-testid=thumbnail]');
      return i && i.complete && i.naturalWidth > 0;
    });
    const href = await page.getByTestId('ohif-link').first().getAttribute('href');
    assert(href === `${URL_}/ohif/viewer?StudyInstanceUIDs=${STUDY}`, href);
  });
  await shot(page, 'patient.png', { fullPage: true });
  await check('viewer: opens from the thumbnail, scrolls two images with keys and wheel, CT presets', async () => {
    await page.locator(`li.study[data-study="${STUDY}"] button.thumb`).click();
    const dlg = page.getByTestId('viewer');
    await dlg.waitFor();
    const counter = page.getByTestId('viewer-counter');
    const loaded = (i, w = 'default') =>
      page.waitForFunction(
        ([i, w]) => {
          const im = document.querySelector('[data-testid=viewer-image]');
          return im && im.dataset.index === String(i) && im.dataset.window === w && im.complete && im.naturalWidth > 0 && im.dataset.shown;
        },
        [i, w],
      );
    await loaded(1);
    assert((await counter.innerText()).trim() === '1 / 2', await counter.innerText());
    const src1 = await page.getByTestId('viewer-image').getAttribute('src');
    await page.keyboard.press('ArrowDown');
    await loaded(2);
    assert((await counter.innerText()).trim() === '2 / 2', await counter.innerText());
    const src2 = await page.getByTestId('viewer-image').getAttribute('src');
    assert(src1 !== src2, 'another image');
    await page.locator('.stage').hover();
    await page.mouse.wheel(0, -120);
    await loaded(1);
    await page.getByRole('button', { name: 'Lung −600/1500' }).click();
    await loaded(1, '-600,1500');
    assert(page.renders.some((u) => u.includes('window=-600,1500')), `renders ${page.renders}`);
    await page.getByRole('button', { name: 'Bone 300/1500' }).click();
    await loaded(1, '300,1500');
    assert(page.renders.some((u) => u.includes('/rendered')), 'rendered frames');
    await shot(page, 'viewer.png');
    await page.keyboard.press('Escape');
    await dlg.waitFor({ state: 'detached' });
  });
  await check('viewer: multi-frame playback (frames rendered one by one)', async () => {
    await page.locator(`li.study[data-study="${env('CINE')}"] button.thumb`).click();
    const dlg = page.getByTestId('viewer');
    await dlg.waitFor();
    const at = (i) =>
      page.waitForFunction((i) => {
        const im = document.querySelector('[data-testid=viewer-image]');
        return im && im.dataset.index === String(i) && im.complete && im.naturalWidth > 0;
      }, i);
    await at(1);
    assert((await page.getByTestId('viewer-counter').innerText()).trim() === '1 / 2', 'two frames');
    await page.getByRole('button', { name: 'Play' }).click();
    await at(2);
    await at(1); // it loops
    await page.getByRole('button', { name: 'Pause' }).click();
    assert(page.renders.some((u) => u.includes('/frames/2/rendered')), `renders ${page.renders}`);
    await page.keyboard.press('Escape');
    await dlg.waitFor({ state: 'detached' });
  });
  await check('order check: a second HbA1c warns with the laboratory and the earlier date', async () => {
    await page.getByRole('link', { name: 'Order check' }).last().click();
    await page.getByRole('heading', { name: 'Duplicate check before ordering' }).waitFor();
    assert((await page.getByLabel('Regional ID').inputValue()) === PATIENT, 'patient prefilled');
    await page.getByLabel('Code', { exact: true }).fill('4548-4');
    await page.getByRole('button', { name: 'Check for duplicates' }).click();
    const w = page.getByTestId('duplicate-warning').first();
    await w.waitFor();
    const fac = await w.locator('.earlier-facility').allInnerTexts();
    assert(fac.includes('みなと臨床検査センター'), `facilities ${fac}`);
    const dates = await w.locator('.earlier-date time').evaluateAll((ts) => ts.map((t) => t.getAttribute('datetime')));
    assert(dates.some((d) => d && d.startsWith(env('LAB_DATE', ''))), `dates ${dates}`);
    const text = await w.innerText();
    assert(text.includes('HbA1c'), text);
  });
  await check('order check: an active drug warns with the prescribing clinic', async () => {
    await page.getByLabel('Drug').check();
    await page.getByLabel('Code', { exact: true }).fill('2189015F1022');
    await page.getByRole('button', { name: 'Check for duplicates' }).click();
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=duplicate-warning] .earlier-facility')].some((e) => e.textContent.includes('あおぞら')));
    await shot(page, 'order.png', { fullPage: true });
  });
  await check('sign out forgets the token', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert((await page.evaluate(() => sessionStorage.getItem('renkei.token'))) === null, 'token gone');
  });
  await check('no request left the node; no script error', async () => {
    assert(page.external.length === 0, `external: ${page.external}`);
    assert(page.errors.length === 0, `errors: ${page.errors}`);
  });
  await context.close();
});

// ------------------------------------------------------ a facility without a relationship
await flow('denial', async (check) => {
  const { context, page } = await newPage({ locale: 'en-US' });
  await check('a doctor of a facility without a treating relationship is denied the record', async () => {
    await signIn(page, env('OTHER_TOKEN'));
    await page.goto(`${URL_}/ui/#/patient/${PATIENT}`);
    const err = page.locator('.error[data-status="403"]');
    await err.waitFor();
    const text = await err.innerText();
    assert(text.includes('Access denied'), text);
    assert(!(await page.getByTestId('timeline').count()), 'no timeline');
  });
  await context.close();
});

// -------------------------------------------------------------- EMS (Japanese, tablet)
await flow('ems', async (check) => {
  const { context, page } = await newPage({ locale: 'ja-JP', viewport: { width: 1024, height: 768 }, hasTouch: true });
  await check('Japanese by default when the browser prefers it', async () => {
    await page.goto(`${URL_}/ui/`);
    await page.getByRole('heading', { name: 'サインイン' }).waitFor();
    await page.getByLabel('アクセストークン').waitFor();
    assert((await page.locator('html').getAttribute('lang')) === 'ja', 'lang=ja');
  });
  await check('an EMS crew lands on the EMS view', async () => {
    await page.getByLabel('アクセストークン').fill(env('EMS_TOKEN'));
    await page.getByRole('button', { name: 'サインイン' }).click();
    await page.getByRole('heading', { name: '救急：緊急アクセス' }).waitFor();
    const who = await page.getByTestId('whoami').innerText();
    assert(who.includes('救急隊員') && who.includes('中央消防署'), who);
  });
  await check('without break-glass the summary is denied (403)', async () => {
    await page.goto(`${URL_}/ui/#/ems/${CARD}`);
    const d = page.getByTestId('ems-denied');
    await d.waitFor();
    const text = await d.innerText();
    assert(text.includes('アクセスが拒否されました') && text.includes('ブレークグラス'), text);
  });
  await check('the reason is required', async () => {
    assert((await page.getByTestId('ems-card').inputValue()) === CARD, 'card kept');
    await page.getByTestId('break-glass').click();
    await page.getByText('理由を入力してください', { exact: true }).waitFor();
  });
  await check('break-glass with a reason → the emergency summary on one screen', async () => {
    await page.getByRole('button', { name: '意識障害' }).tap();
    assert((await page.getByTestId('ems-reason').inputValue()) === '意識障害', 'reason filled');
    await page.getByTestId('break-glass').tap();
    await page.getByTestId('ems-summary').waitFor();
    const box = async (id) => page.getByTestId(id).innerText();
    assert((await box('ems-allergies')).includes('ペニシリン'), await box('ems-allergies'));
    assert((await box('ems-conditions')).includes('2型糖尿病'), await box('ems-conditions'));
    assert((await box('ems-meds')).includes('メトホルミン'), await box('ems-meds'));
    assert((await box('ems-labs')).includes('HbA1c'), await box('ems-labs'));
    assert((await box('ems-studies')).includes('CT'), await box('ems-studies'));
    const fac = await box('ems-facilities');
    for (const f of FACILITIES) assert(fac.includes(f), `${f} in ${fac}`);
    assert(await page.locator('a.tel[href="tel:0331110001"]').count(), 'phone link');
    const h1 = await page.locator('h1').innerText();
    assert(h1.includes('山田 太郎'), h1);
  });
  await check('the break-glass countdown is visible and runs', async () => {
    const timer = page.getByTestId('bg-timer');
    const a = await timer.innerText();
    assert(/残り時間/.test(a) && /[0-9]:[0-5][0-9]:[0-5][0-9]/.test(a), a);
    const secs = (s) => s.match(/(\d+):(\d\d):(\d\d)/).slice(1).reduce((t, x) => t * 60 + Number(x), 0);
    assert(secs(a) > 3.9 * 3600 && secs(a) <= 4 * 3600, a);
    await page.waitForTimeout(2100);
    const b = await timer.innerText();
    assert(secs(b) < secs(a), `${a} → ${b}`);
  });
  await check('fits 1024×768 with large touch targets', async () => {
    const size = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]);
    assert(size[0] <= 1024 && size[1] <= 768, `page ${size}`);
    const small = await page.locator('main button, main a, main input').evaluateAll((els) =>
      els
        .filter((e) => e.offsetParent !== null)
        .map((e) => [e.textContent.trim().slice(0, 20), e.getBoundingClientRect().height])
        .filter(([, h]) => h < 44),
    );
    assert(small.length === 0, `small targets ${JSON.stringify(small)}`);
  });
  await shot(page, 'ems.png');
  await check('the language switch turns the page English', async () => {
    await page.getByTestId('lang-switch').click();
    await page.getByTestId('ems-summary').waitFor();
    await page.getByRole('heading', { name: 'Allergies' }).waitFor();
    assert((await page.locator('html').getAttribute('lang')) === 'en', 'lang=en');
    await page.getByTestId('lang-switch').click();
    await page.getByRole('heading', { name: 'アレルギー' }).waitFor();
  });
  await check('no request left the node; no script error', async () => {
    assert(page.external.length === 0, `external: ${page.external}`);
    assert(page.errors.length === 0, `errors: ${page.errors}`);
  });
  await context.close();
});

// ------------------------------------------------- first render with years of records
if (process.env.PERF_PATIENT) {
  await flow('perf', async (check) => {
    // a fresh browser profile: the first load is cold (nothing cached), the next ones warm
    const { context, page } = await newPage({ locale: 'en-US', viewport: { width: 1280, height: 900 } });
    await context.addInitScript((tok) => sessionStorage.setItem('renkei.token', tok), env('DOCTOR_TOKEN'));
    const runs = [];
    await check(`first render of the patient page with ${env('PERF_YEARS')} years (${env('PERF_RECORDS')} records)`, async () => {
      for (let i = 0; i < 6; i++) {
        await page.goto('about:blank');
        await page.goto(`${URL_}/ui/#/patient/${env('PERF_PATIENT')}`);
        await page.waitForFunction(() => performance.getEntriesByName('renkei:patient-rendered').length > 0, null, { timeout: 60_000 });
        runs.push(
          await page.evaluate(() => {
            const nav = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            const fcp = performance.getEntriesByName('first-contentful-paint')[0];
            const ev = res.filter((r) => r.name.includes('$everything'));
            const own = (n) => res.find((r) => r.name.endsWith(n));
            return {
              rendered_ms: performance.getEntriesByName('renkei:patient-rendered')[0].startTime,
              data_ms: performance.getEntriesByName('renkei:patient-data')[0].startTime,
              built_ms: performance.getEntriesByName('renkei:patient-built')[0].startTime,
              fcp_ms: fcp ? fcp.startTime : null,
              everything_ms: ev.reduce((t, r) => t + r.duration, 0),
              after_everything_ms: ev.length ? performance.getEntriesByName('renkei:patient-rendered')[0].startTime - Math.max(...ev.map((r) => r.responseEnd)) : null,
              requests: res.filter((r) => !r.name.startsWith('blob:')).map((r) => r.name.replace(location.origin, '').slice(0, 60)),
              everything_requests: ev.length,
              everything_bytes: ev.reduce((t, r) => t + r.encodedBodySize, 0),
              everything_decoded_bytes: ev.reduce((t, r) => t + r.decodedBodySize, 0),
              html_transfer: nav ? nav.transferSize : null,
              js_transfer: own('app.js')?.transferSize ?? null,
              css_transfer: own('app.css')?.transferSize ?? null,
              timeline_rows: document.querySelectorAll('[data-testid=timeline] li').length,
              dom_nodes: document.getElementsByTagName('*').length,
            };
          }),
        );
      }
    });
    // what gzip on the FHIR routes would save: the same $everything, compressed here
    const gz = await page.evaluate(async (pid) => {
      const r = await fetch(`/fhir/Patient/${pid}/$everything?_count=1000`, {
        headers: { Authorization: `Bearer ${sessionStorage.getItem('renkei.token')}`, Accept: 'application/fhir+json' },
      });
      const text = await r.text();
      const z = await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream('gzip'))).arrayBuffer();
      return { encoding: r.headers.get('content-encoding'), bytes: text.length, gzip_bytes: z.byteLength };
    }, env('PERF_PATIENT'));
    const med = (k) => {
      const v = runs.slice(1).map((r) => r[k]).sort((a, b) => a - b);
      return v[Math.floor(v.length / 2)];
    };
    console.log(
      `UI_PERF ${JSON.stringify({
        years: Number(env('PERF_YEARS')),
        records: Number(env('PERF_RECORDS')),
        cold: runs[0],
        warm_median: {
          rendered_ms: med('rendered_ms'),
          fcp_ms: med('fcp_ms'),
          everything_ms: med('everything_ms'),
          after_everything_ms: med('after_everything_ms'),
          data_ms: med('data_ms'),
          built_ms: med('built_ms'),
        },
        runs: runs.map((r) => Math.round(r.rendered_ms)),
        everything_first_page: gz,
      })}`,
    );
    await context.close();
  });
}

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
