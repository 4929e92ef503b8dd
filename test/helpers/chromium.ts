import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';

/**
 * Debian's Chromium, headless, driven by playwright-core (no browser download): installed with apt-get when
 * missing, as test/run.sh installs nats-server. What stops that comes back as a reason to skip.
 */

export const CHROMIUM = '/usr/bin/chromium';
/** Long enough for apt-get to fetch Chromium and its libraries on a slow line. */
const INSTALL_TIMEOUT_MS = 10 * 60_000;

/** Installs Debian's chromium package if it is not there; resolves with why it cannot be, or undefined when it is there. */
export async function ensureChromium(): Promise<string | undefined> {
  if (existsSync(CHROMIUM)) return undefined;
  const root = process.getuid?.() === 0;
  const prefix = root ? [] : ['sudo', '-n'];
  const apt = async (...args: string[]) => run(prefix[0] ?? 'apt-get', [...(root ? [] : [...prefix.slice(1), 'apt-get']), ...args]);
  if (!(await apt('install', '-y', '-q', 'chromium')).ok) {
    const updated = await apt('update', '-q');
    const installed = updated.ok ? await apt('install', '-y', '-q', 'chromium') : updated;
    if (!installed.ok) return `Debian's chromium package is not installed and apt-get cannot install it here: ${installed.output}`;
  }
  return existsSync(CHROMIUM) ? undefined : `apt-get installed chromium, but ${CHROMIUM} is not there`;
}

/** A headless Chromium with a fresh profile (playwright takes it as the persistent context's folder) and nothing that reaches the network by itself. */
export function launchChromium(): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'autoprune-chromium-'));
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 960, height: 1200 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

function run(program: string, args: readonly string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(
      program,
      args,
      { timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 << 20, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
      (error, stdout, stderr) => resolve({ ok: !error, output: `${stderr}\n${stdout}`.replace(/\s+/g, ' ').trim().slice(-600) || String(error?.message) }),
    );
  });
}
