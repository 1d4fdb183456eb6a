/**
 * The fuzz progress line for a terminal: a bar, steps done, steps per second, VMs alive, pages by host state and
 * violations, redrawn in place with a carriage return. The command prints it only when standard error is a TTY.
 */

import type { FuzzProgress } from './runner.js';

const WIDTH = 24;

/** One progress line (no newline; starts with `\r` to overwrite the previous one). */
export function progressLine(p: FuzzProgress): string {
  const frac = p.total > 0 ? Math.min(1, p.steps / p.total) : 1;
  const fill = Math.round(frac * WIDTH);
  const bar = '#'.repeat(fill) + '.'.repeat(WIDTH - fill);
  const pages = p.pages;
  const pg =
    pages.OWNED === undefined
      ? ''
      : `  pages O ${pages.OWNED} SO ${pages.SHARED_OWNED ?? 0} SB ${pages.SHARED_BORROWED ?? 0} NP ${pages.NOPAGE ?? 0}`;
  return `\r[${bar}] ${p.steps}/${p.total} steps  ${p.stepsPerSecond} steps/s  VMs ${p.vmsAlive}${pg}  violations ${p.violations}\x1b[K`;
}
