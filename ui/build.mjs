// Build the pages into dist/ (committed: `cargo build` embeds these files, see
// crates/renkei-web/src/ui.rs): one minified script, one minified stylesheet, index.html,
// the icon, and a gzip variant of each text file. No source maps, no hashes in names.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync, readdirSync, rmSync } from 'node:fs';
import { gzipSync, constants } from 'node:zlib';

const out = 'dist';
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: 'src/main.ts' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: out,
  legalComments: 'none',
  logLevel: 'warning',
});
await build({
  entryPoints: { app: 'styles.css' },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: 'warning',
});
const html = readFileSync('index.html', 'utf8').replace(/\n\s*/g, '\n');
writeFileSync(`${out}/index.html`, html);
copyFileSync('icon.svg', `${out}/icon.svg`);
for (const f of ['index.html', 'app.js', 'app.css']) {
  const gz = gzipSync(readFileSync(`${out}/${f}`), { level: constants.Z_BEST_COMPRESSION });
  // fixed mtime (0) in the gzip header: the same sources give the same bytes
  writeFileSync(`${out}/${f}.gz`, gz);
}
let total = 0, gzTotal = 0;
for (const f of readdirSync(out).sort()) {
  const n = readFileSync(`${out}/${f}`).length;
  if (f.endsWith('.gz')) gzTotal += n; else total += n;
  console.log(`${f.padEnd(16)} ${String(n).padStart(7)} B`);
}
console.log(`total ${total} B, gzip ${gzTotal} B (+ icon)`);
