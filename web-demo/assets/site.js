// Shared by the demo pages: the header, a development token, a microsecond wall clock and the
// hub's clock offset (for end-to-end latency), a messages-per-second meter, and the WebRTC offer
// filter for a hub on loopback. Pages import the client from /client/index.js themselves.

export const $ = (id) => document.getElementById(id);

const PAGES = [
  ["/", "Telemetry"],
  ["/video", "Video"],
  ["/console", "Console"],
];

/** Fills `<header class="site">`: the name, the page links, and a status span (`#status`). */
export function header() {
  const h = document.querySelector("header.site");
  const brand = document.createElement("span");
  brand.className = "brand";
  brand.textContent = "fanhub";
  const nav = document.createElement("nav");
  for (const [href, label] of PAGES) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = label;
    if (href === location.pathname) a.setAttribute("aria-current", "page");
    nav.append(a);
  }
  const status = document.createElement("span");
  status.className = "status";
  status.id = "status";
  status.textContent = "starting…";
  h.prepend(brand, nav);
  h.append(status);
}

/** Shows the connection state in the header (`data-state` colours it). */
export function setStatus(state, text = state) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = text;
}

/** Shows a problem the user should read (empty text hides it). */
export function notice(text) {
  $("notice").textContent = text;
}

/** `ws://` or `wss://` URL of this hub's WebSocket endpoint. */
export function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

/**
 * A development token (`POST /v1/dev/token`, development mode only) for `subject`, allowed to
 * subscribe to `subscribe`. Throws an Error whose message says what to do when there is none.
 */
export async function devToken(subject, subscribe = ["demo/>"]) {
  let r;
  try {
    r = await fetch("/v1/dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ subject, subscribe, publish: [], ttl_secs: 3600 }),
    });
  } catch (e) {
    throw new Error(`cannot reach the hub: ${e.message}`);
  }
  let body = {};
  try {
    body = await r.json();
  } catch {
    /* not JSON */
  }
  if (r.status === 404 || r.status === 405) {
    throw new Error("this hub hands out no development tokens (it is not in development mode): the demo pages need `fanhub serve` on its default configuration");
  }
  if (!r.ok) throw new Error(`development token: ${r.status} ${body.code || ""} ${body.message || ""}`.trim());
  return body.token;
}

/**
 * Microseconds since the UNIX epoch, finer than `Date.now()`'s milliseconds (over loopback a
 * message's latency is about a millisecond). Give it to the client (`wallClockUs` option) and to
 * {@link ClockSync} so time syncs and latencies use the same clock.
 */
export function wallClockUs() {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/**
 * The hub's clock offset, from time syncs: a burst of `burst` right after connecting, then one
 * every `everyMs`; the estimate is the sample with the smallest round trip of the last sixteen
 * (the one least skewed by queueing on either side; its error is at most half its round trip).
 * `latencyMs(publishTimeUs)` turns a message's hub timestamp into its end-to-end latency.
 * `clock` must be the clock the client was given (its `wallClockUs` option).
 */
export class ClockSync {
  constructor(client, clock = wallClockUs, { everyMs = 5000, burst = 5 } = {}) {
    this.client = client;
    this.wallClockUs = clock;
    this.burst = burst;
    this.samples = [];
    this.offsetUs = undefined;
    this.rttUs = undefined;
    this.timer = setInterval(() => void this.sync(), everyMs);
    client.on("status", (s) => {
      if (s.state === "connected") void this.syncBurst();
    });
  }

  async syncBurst() {
    for (let i = 0; i < this.burst; i++) if (!(await this.sync())) return;
  }

  /** One sample; false when the connection is gone (the next connection syncs again). */
  async sync() {
    let s;
    try {
      s = await this.client.timeSync();
    } catch {
      return false;
    }
    this.samples.push(s);
    if (this.samples.length > 16) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rttUs < a.rttUs ? b : a));
    this.offsetUs = best.offsetUs;
    this.rttUs = best.rttUs;
    return true;
  }

  /** Milliseconds from the hub's `publishTimeUs` to now, on the hub's clock; undefined before the first sync. */
  latencyMs(publishTimeUs) {
    if (this.offsetUs === undefined) return undefined;
    return (this.wallClockUs() + this.offsetUs - publishTimeUs) / 1000;
  }

  stop() {
    clearInterval(this.timer);
  }
}

/** Messages per second over the last `windowMs`. */
export class RateMeter {
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.times = [];
  }
  tick(now = performance.now()) {
    this.times.push(now);
    this.trim(now);
  }
  rate(now = performance.now()) {
    this.trim(now);
    return (this.times.length * 1000) / this.windowMs;
  }
  trim(now) {
    const from = now - this.windowMs;
    let i = 0;
    while (i < this.times.length && this.times[i] < from) i++;
    if (i) this.times.splice(0, i);
  }
}

/** Whether `host` (a page's `location.hostname`) is a loopback address. */
export function isLoopback(host) {
  return /^127\./.test(host) || host === "localhost" || host === "::1" || host === "[::1]";
}

/**
 * Keeps only the offer's loopback candidates, for a hub reached over loopback: its candidate is a
 * loopback address, which no other candidate of ours can pair with. The hub then never learns a
 * non-loopback address of ours; it needs none (it answers the checks it gets). Without a loopback
 * candidate the c= and m= lines get the "no candidate" defaults.
 */
export function loopbackOnly(sdp) {
  let kept;
  const lines = sdp.split("\r\n").filter((line) => {
    const m = /^a=candidate:\S+ \d+ (\S+) \d+ (\S+) (\d+) typ /i.exec(line);
    if (!m) return true;
    const keep = m[1].toLowerCase() === "udp" && isLoopback(m[2]);
    if (keep) kept ??= { addr: m[2], port: m[3] };
    return keep;
  });
  const addr = kept ? `${kept.addr.includes(":") ? "IP6" : "IP4"} ${kept.addr}` : "IP4 0.0.0.0";
  return lines
    .map((line) => line.replace(/^c=IN IP[46] .*/, `c=IN ${addr}`).replace(/^m=application \d+ /, `m=application ${kept ? kept.port : 9} `))
    .join("\r\n");
}

/** `12.3` for a number, `–` for none. */
export function fixed(v, digits = 1) {
  return v === undefined || v === null || Number.isNaN(v) ? "–" : Number(v).toFixed(digits);
}
