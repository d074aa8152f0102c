// Aggregates repeated notices, so a flood of bad messages becomes a few log lines and dashboard alerts plus one
// count per window instead of one line per message.

export interface ThrottleOptions {
  /** Notices with the same key passed on per window; the rest are counted. */
  burst: number;
  windowMs: number;
}

interface Window {
  started: number;
  passed: number;
  suppressed: number;
  timer?: NodeJS.Timeout;
}

export class NoticeThrottle {
  private readonly windows = new Map<string, Window>();

  /** `summarise(key, n, ms)` is called once a window that suppressed `n` notices closes. */
  constructor(
    private readonly o: ThrottleOptions,
    private readonly summarise: (key: string, suppressed: number, windowMs: number) => void,
  ) {}

  /** True when a notice under `key` should be passed on now. */
  pass(key: string, now = Date.now()): boolean {
    let w = this.windows.get(key);
    if (!w || now - w.started >= this.o.windowMs) {
      if (w) this.close(key, w);
      w = { started: now, passed: 0, suppressed: 0 };
      this.windows.set(key, w);
    }
    if (w.passed < this.o.burst) {
      w.passed++;
      return true;
    }
    w.suppressed++;
    if (!w.timer) {
      const win = w;
      win.timer = setTimeout(
        () => {
          if (this.windows.get(key) === win) this.close(key, win);
        },
        Math.max(0, win.started + this.o.windowMs - now),
      );
      win.timer.unref();
    }
    return false;
  }

  private close(key: string, w: Window): void {
    if (w.timer) clearTimeout(w.timer);
    this.windows.delete(key);
    if (w.suppressed > 0) this.summarise(key, w.suppressed, this.o.windowMs);
  }

  /** Reports what is still counted (server shutdown). */
  flush(): void {
    for (const [k, w] of [...this.windows]) this.close(k, w);
  }
}
