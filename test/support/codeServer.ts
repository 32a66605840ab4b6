/**
 * A real VS Code for tests on machines where desktop VS Code cannot be downloaded: code-server
 * (installed outside the repo by scripts/e2e/install-code-server.sh) on 127.0.0.1, driven by
 * Debian's Chromium through playwright-core. Everything it writes (user data, extensions,
 * XDG folders, temp files) lives in one temp folder removed by `stop()`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';

export const REPO = join(__dirname, '..', '..');

/** Where install-code-server.sh puts code-server (same default there). */
export function codeServerHome(): string {
  return (
    process.env.LORA_SYNC_CODE_SERVER_HOME ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'lora-sync', 'code-server')
  );
}

export function codeServerBin(): string | undefined {
  const bin = join(codeServerHome(), 'node_modules', '.bin', 'code-server');
  return existsSync(bin) ? bin : undefined;
}

export function chromiumPath(): string | undefined {
  return [process.env.LORA_SYNC_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
    (p): p is string => !!p && existsSync(p),
  );
}

/** Why a real-VS-Code suite cannot run here, or undefined when it can. */
export function missingPieces(): string | undefined {
  const missing = [
    codeServerBin() ? '' : `code-server (not in ${codeServerHome()})`,
    chromiumPath() ? '' : 'chromium',
  ].filter(Boolean);
  return missing.length ? `${missing.join(' and ')} missing: run scripts/e2e/install-code-server.sh` : undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface CodeServer {
  url: string;
  port: number;
  /** code-server's own output so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra environment for code-server and so for the extension host (and our language server). */
  env?: Record<string, string>;
  /** Install these .vsix files before the server starts. */
  vsix?: string[];
}

function run(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${bin} ${args.join(' ')} exited ${code}:\n${out}`)),
    );
  });
}

export async function startCodeServer(opts: StartOptions = {}): Promise<CodeServer> {
  const bin = codeServerBin();
  if (!bin) throw new Error(missingPieces());
  const home = await mkdtemp(join(tmpdir(), 'lora-cs-'));
  const dirs = {
    ud: join(home, 'user-data'),
    ext: join(home, 'extensions'),
    cfg: join(home, 'config'),
    data: join(home, 'data'),
    tmp: join(home, 'tmp'),
  };
  for (const d of Object.values(dirs)) await mkdir(d, { recursive: true });
  const port = await freePort();
  const config = join(home, 'config.yaml');
  await writeFile(config, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  // Settings a test run needs: no welcome page, no trust prompt, no telemetry, our workbench stays quiet.
  await mkdir(join(dirs.ud, 'User'), { recursive: true });
  await writeFile(
    join(dirs.ud, 'User', 'settings.json'),
    JSON.stringify(
      {
        'workbench.startupEditor': 'none',
        'security.workspace.trust.enabled': false,
        'telemetry.telemetryLevel': 'off',
        'workbench.tips.enabled': false,
        'extensions.autoCheckUpdates': false,
        'extensions.autoUpdate': false,
        'update.mode': 'none',
        'workbench.enableExperiments': false,
        'chat.disableAIFeatures': true,
      },
      null,
      2,
    ),
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...opts.env,
    XDG_CONFIG_HOME: dirs.cfg,
    XDG_DATA_HOME: dirs.data,
    TMPDIR: dirs.tmp,
    EXTENSIONS_GALLERY: '{"serviceUrl":""}',
  };
  const common = ['--extensions-dir', dirs.ext, '--user-data-dir', dirs.ud];
  for (const v of opts.vsix ?? []) await run(bin, [...common, '--install-extension', v, '--force'], env);

  let out = '';
  const child: ChildProcess = spawn(
    bin,
    [
      '--config',
      config,
      ...common,
      '--disable-workspace-trust',
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-getting-started-override',
      '--disable-file-downloads',
      '--ignore-last-opened',
    ],
    { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    // Its own process group: the extension host and our language server go with it.
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      /* already gone */
    }
    await new Promise((r) => setTimeout(r, 300));
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
    await rm(home, { recursive: true, force: true, maxRetries: 5 });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited ${child.exitCode}:\n${out}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer on ${url} within 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, port, output: () => out, stop };
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error('chromium missing: apt-get install -y chromium');
  return chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/** The workbench URL that opens `folder` (and, for extension tests, loads the extension under test). */
export function workbenchUrl(cs: CodeServer, folder: string, payload?: Array<[string, string]>): string {
  const q = new URLSearchParams({ folder });
  if (payload) q.set('payload', JSON.stringify(payload));
  return `${cs.url}/?${q.toString()}`;
}
