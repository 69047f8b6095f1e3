// A simple image viewer in a modal dialog: rendered frames via WADO-RS (fetched with the
// token, shown from blob URLs), CT window presets, scrolling through a series (wheel,
// arrow keys, slider), multi-frame playback, and the OHIF-style viewer link.

import { api, blob } from './api';
import { fill, h, nextId } from './dom';
import { fmtDate, Key, t } from './i18n';
import { R } from './fhir';
import { onLeave, viewerLink } from './state';

interface Preset {
  key: Key;
  win: [number, number] | null;
}

const PRESETS: Preset[] = [
  { key: 'win_default', win: null },
  { key: 'win_brain', win: [40, 80] },
  { key: 'win_lung', win: [-600, 1500] },
  { key: 'win_bone', win: [300, 1500] },
  { key: 'win_abdomen', win: [40, 400] },
];

interface Img {
  instance: string;
  /** 1-based frame of a multi-frame instance; 0 for a single-frame instance. */
  frame: number;
}

const first = (v: R | undefined): any => (v && Array.isArray(v.Value) ? v.Value[0] : undefined);

/** The images of a series: its instances (QIDO) in instance-number order, frames expanded. */
async function seriesImages(study: string, series: string): Promise<Img[]> {
  const list = await api<R[]>(
    `/dicom-web/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}/instances?includefield=00280008&includefield=00200013`,
    { accept: 'application/dicom+json' },
  );
  const inst = (Array.isArray(list) ? list : [])
    .map((d) => ({
      uid: String(first(d['00080018']) ?? ''),
      num: Number(first(d['00200013']) ?? 0),
      frames: Number(first(d['00280008']) ?? 1) || 1,
    }))
    .filter((i) => i.uid)
    .sort((a, b) => a.num - b.num || a.uid.localeCompare(b.uid));
  const out: Img[] = [];
  for (const i of inst) {
    if (i.frames > 1) for (let f = 1; f <= i.frames; f++) out.push({ instance: i.uid, frame: f });
    else out.push({ instance: i.uid, frame: 0 });
  }
  return out;
}

function renderedPath(study: string, series: string, img: Img, win: [number, number] | null): string {
  const base = `/dicom-web/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}/instances/${encodeURIComponent(img.instance)}`;
  const path = img.frame ? `${base}/frames/${img.frame}/rendered` : `${base}/rendered`;
  return win ? `${path}?window=${win[0]},${win[1]}` : path;
}

let open: HTMLDialogElement | null = null;

export function openViewer(study: R, facility: string): void {
  open?.close();
  const uid = String(study.id);
  const series: R[] = Array.isArray(study.series) ? study.series : [];
  const isCT = (study.modality || []).some((m: R) => m.code === 'CT') || series.some((s) => s.modality?.code === 'CT');
  const titleId = nextId('vt');
  const seriesId = nextId('vs');
  const sliderId = nextId('vp');
  const cache = new Map<string, Promise<string>>();
  let images: Img[] = [];
  let index = 0;
  let preset: Preset = PRESETS[0];
  let seriesUid = series[0]?.uid || '';
  let playing: number | null = null;

  const img = h('img', { class: 'view-img', alt: '', 'data-testid': 'viewer-image' });
  const counter = h('p', { class: 'counter', 'aria-live': 'polite', 'data-testid': 'viewer-counter' });
  const msg = h('p', { class: 'viewer-msg', role: 'status' });
  const slider = h('input', { id: sliderId, type: 'range', min: 1, max: 1, value: 1, step: 1 });
  const playBtn = h('button', { type: 'button', class: 'play', 'aria-pressed': 'false' }, t('play'));
  const seriesSel = h(
    'select',
    { id: seriesId },
    series.map((s, i) =>
      h('option', { value: s.uid }, [`#${s.number ?? i + 1}`, s.modality?.code, s.description, `(${s.numberOfInstances ?? '?'})`].filter(Boolean).join(' ')),
    ),
  );
  const presetBtns = (isCT ? PRESETS : PRESETS.slice(0, 1)).map((p) =>
    h(
      'button',
      {
        type: 'button',
        class: 'preset',
        'aria-pressed': p === preset ? 'true' : 'false',
        'data-window': p.win ? p.win.join(',') : 'default',
        onclick: () => {
          preset = p;
          presetBtns.forEach((b) => b.setAttribute('aria-pressed', b.dataset.window === (p.win ? p.win.join(',') : 'default') ? 'true' : 'false'));
          void show(index);
        },
      },
      t(p.key),
    ),
  );
  const stage = h('div', { class: 'stage', tabindex: '0', 'aria-describedby': `${titleId}-help` }, img, msg);

  const keyOf = (i: number) => `${seriesUid}|${images[i]?.instance}|${images[i]?.frame}|${preset.win ?? ''}`;
  const load = (i: number): Promise<string> => {
    const k = keyOf(i);
    let p = cache.get(k);
    if (!p) {
      p = blob(renderedPath(uid, seriesUid, images[i], preset.win), 'image/jpeg, image/png;q=0.9').then((b) => URL.createObjectURL(b));
      p.catch(() => cache.delete(k));
      cache.set(k, p);
    }
    return p;
  };

  async function show(i: number): Promise<void> {
    if (!images.length) return;
    index = Math.max(0, Math.min(images.length - 1, i));
    slider.value = String(index + 1);
    const label = t('imageOf', { i: index + 1, n: images.length });
    counter.textContent = `${index + 1} / ${images.length}`;
    const k = keyOf(index);
    try {
      const u = await load(index);
      if (keyOf(index) !== k) return; // moved on meanwhile
      img.src = u;
      img.alt = label;
      img.dataset.index = String(index + 1);
      img.dataset.window = preset.win ? preset.win.join(',') : 'default';
      await img.decode().catch(() => undefined);
      img.dataset.shown = k;
      msg.textContent = '';
      // the neighbours, so that scrolling is smooth
      if (index + 1 < images.length) void load(index + 1).catch(() => undefined);
      if (index > 0) void load(index - 1).catch(() => undefined);
    } catch (e) {
      msg.textContent = t('imageError', { e: e instanceof Error ? e.message : String(e) });
    }
  }

  function stop(): void {
    if (playing !== null) window.clearTimeout(playing);
    playing = null;
    playBtn.textContent = t('play');
    playBtn.setAttribute('aria-pressed', 'false');
  }

  function play(): void {
    if (images.length < 2) return;
    playBtn.textContent = t('pause');
    playBtn.setAttribute('aria-pressed', 'true');
    const step = async () => {
      const started = performance.now();
      await show((index + 1) % images.length);
      if (playing === null) return;
      playing = window.setTimeout(step, Math.max(0, 100 - (performance.now() - started)));
    };
    playing = window.setTimeout(step, 0);
  }

  async function loadSeries(s: string): Promise<void> {
    stop();
    seriesUid = s;
    images = [];
    index = 0;
    msg.textContent = t('loading');
    try {
      images = await seriesImages(uid, s);
    } catch (e) {
      msg.textContent = t('imageError', { e: e instanceof Error ? e.message : String(e) });
      return;
    }
    slider.max = String(Math.max(1, images.length));
    slider.disabled = images.length < 2;
    playBtn.disabled = images.length < 2;
    await show(0);
  }

  const step = (d: number) => {
    stop();
    void show(index + d);
  };
  stage.addEventListener(
    'wheel',
    (ev: WheelEvent) => {
      ev.preventDefault();
      if (ev.deltaY) step(ev.deltaY > 0 ? 1 : -1);
    },
    { passive: false },
  );
  const dlg = h('dialog', { class: 'viewer', 'aria-labelledby': titleId, 'data-testid': 'viewer' }) as HTMLDialogElement;
  dlg.addEventListener('keydown', (ev: KeyboardEvent) => {
    const tag = (ev.target as HTMLElement).tagName;
    if (tag === 'SELECT' || (tag === 'INPUT' && ev.target !== slider)) return;
    const keys: Record<string, () => void> = {
      ArrowDown: () => step(1),
      ArrowRight: () => step(1),
      PageDown: () => step(1),
      ArrowUp: () => step(-1),
      ArrowLeft: () => step(-1),
      PageUp: () => step(-1),
      Home: () => step(-images.length),
      End: () => step(images.length),
      ' ': () => (playing === null ? play() : stop()),
    };
    const f = keys[ev.key];
    if (f && (ev.target === stage || ev.target === dlg || ev.target === slider || ev.key !== ' ')) {
      ev.preventDefault();
      f();
    }
  });
  slider.addEventListener('input', () => {
    stop();
    void show(Number(slider.value) - 1);
  });
  seriesSel.addEventListener('change', () => void loadSeries(seriesSel.value));
  playBtn.addEventListener('click', () => (playing === null ? play() : stop()));
  const link = viewerLink(uid);
  const mods = (study.modality || []).map((m: R) => m.code).join('/');
  fill(
    dlg,
    h(
      'div',
      { class: 'viewer-head' },
      h('h2', { id: titleId }, [mods, study.description].filter(Boolean).join(' ') || t('viewer')),
      h('p', { class: 'muted small' }, [fmtDate(study.started), facility].filter(Boolean).join(' · ')),
      h('button', { type: 'button', class: 'close', onclick: () => dlg.close() }, t('close')),
    ),
    h(
      'div',
      { class: 'viewer-tools' },
      series.length > 1 ? h('div', null, h('label', { for: seriesId }, t('seriesLabel')), seriesSel) : null,
      h('div', { class: 'presets', role: 'group', 'aria-label': t('window') }, presetBtns),
      link ? h('a', { href: link, target: '_blank', rel: 'noopener', class: 'ext' }, t('openOhif')) : null,
    ),
    stage,
    h(
      'div',
      { class: 'viewer-nav' },
      h('button', { type: 'button', 'aria-label': t('prev'), onclick: () => step(-1) }, '◀'),
      h('label', { for: sliderId, class: 'sr-only' }, t('position')),
      slider,
      h('button', { type: 'button', 'aria-label': t('next'), onclick: () => step(1) }, '▶'),
      counter,
      playBtn,
    ),
    h('p', { id: `${titleId}-help`, class: 'muted small' }, t('viewerHelp')),
  );
  const cleanup = () => {
    stop();
    for (const p of cache.values()) p.then((u) => URL.revokeObjectURL(u)).catch(() => undefined);
    cache.clear();
    dlg.remove();
    if (open === dlg) open = null;
  };
  dlg.addEventListener('close', cleanup);
  onLeave(() => dlg.close());
  document.body.append(dlg);
  open = dlg;
  dlg.showModal();
  stage.focus();
  void loadSeries(seriesUid);
}
