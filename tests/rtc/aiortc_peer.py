#!/usr/bin/env python3
"""A fanhub WebRTC peer built on aiortc, an implementation independent of the server's (str0m).

Usage: aiortc_peer.py <base_url> <token> <topic_reliable> <topic_lossy> <n_frames>

Signals over `POST <base_url>/v1/rtc/offer`, opens the `fanhub` (reliable) and `fanhub-lossy`
(ordered=False, maxRetransmits=0) data channels, says `connect`, subscribes to both topics and
prints JSON lines on stdout:

  {"ready":true}                         both subscriptions confirmed
  {"topic":…,"offset":…,"epoch":…,"len":…,"sha1":…,"channel":"fanhub"|"fanhub-lossy"}
                                         one per whole record received (chunks reassembled)
  {"done":true,"incomplete":{channel:[…]},"stray":[…],"closed":"closed"|null,"bye_ms":…}
                                         after all n_frames records of topic_reliable, a settle
                                         (until the lossy channel has been quiet for 0.5 s) and
                                         a `bye`: frames left incomplete, chunks of frames
                                         already whole (duplicates), the answer to `bye`

Exits 0 then; non-zero (with a message on stderr) on any failure or after 40 s.

Network rule: only loopback traffic. aioice is limited to one 127.0.0.1 host candidate, there
are no STUN/TURN servers, HTTP goes without proxies, and the offer and the answer are checked to
name 127.0.0.1 only before they are used.
"""

import asyncio
import hashlib
import ipaddress
import json
import logging
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcicetransport import RTCIceGatherer

HARD_TIMEOUT_S = 40.0
LOSSY_SETTLE_S = 0.5
SETTLE_MAX_S = 10.0
BYE_TIMEOUT_S = 10.0
STARTED = time.monotonic()
CHUNK_MAGIC = 0xCF
CHUNK_HEADER = struct.Struct(">BBHHI")  # magic, reserved, index, count, frame id
RECORD_HEADER = struct.Struct(">BBHIQQQ")  # kind, flags, topic len, payload len, offset, epoch, time
RECORD_KIND = 0x01

# --- loopback only ------------------------------------------------------------------------------
# aioice gathers host candidates from every interface except 127.0.0.1 (aioice.ice.
# get_host_addresses, called by Connection.gather_candidates); this machine has a non-loopback
# address, which must never carry traffic. Only 127.0.0.1, and no default STUN server.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
RTCIceGatherer.getDefaultIceServers = classmethod(lambda cls: [])


class Fail(Exception):
    """The run failed; the message says why."""


def log(*args):
    print(f"aiortc_peer [{time.monotonic() - STARTED:6.2f}s]:", *args, file=sys.stderr, flush=True)


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def sdp_addresses(sdp):
    """Addresses of every candidate and connection line of an SDP."""
    out = []
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("a=candidate:"):
            # candidate:<foundation> <component> <transport> <priority> <address> <port> typ …
            out.append(("candidate", line.split()[4]))
        elif line.startswith("c="):
            out.append(("connection", line.split()[-1]))
    return out


def assert_loopback_only(what, sdp):
    addrs = sdp_addresses(sdp)
    candidates = [a for kind, a in addrs if kind == "candidate"]
    if not candidates:
        raise Fail(f"the {what} has no candidate:\n{sdp}")
    for kind, a in addrs:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            ip = None
        # A c= line of 0.0.0.0 is the usual "see the ICE candidates" (JSEP); it is never a
        # destination. Candidates are what ICE sends to: 127.0.0.1 only.
        ok = ip == ipaddress.ip_address("127.0.0.1") or (kind == "connection" and ip == ipaddress.ip_address("0.0.0.0"))
        if not ok:
            raise Fail(f"the {what} names {a!r} ({kind}), not 127.0.0.1; refusing:\n{sdp}")


def post_offer(base_url, token, sdp):
    """POST the offer; returns (status, headers, body). No proxies: loopback only."""
    url = urllib.parse.urlsplit(base_url)
    if url.scheme != "http" or not ipaddress.ip_address(url.hostname).is_loopback:
        raise Fail(f"base_url must be http://<loopback>:<port>, got {base_url!r}")
    req = urllib.request.Request(
        base_url.rstrip("/") + "/v1/rtc/offer",
        data=sdp.encode(),
        method="POST",
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


class Peer:
    def __init__(self, topic_reliable, topic_lossy, n_frames):
        self.topic_reliable = topic_reliable
        self.topic_lossy = topic_lossy
        self.n_frames = n_frames
        self.loop = asyncio.get_running_loop()
        self.replies = {}  # id -> future of the control reply
        self.all_reliable = self.loop.create_future()
        self.reliable_count = 0
        self.partial = {}  # (channel, frame id) -> [chunk or None]
        self.completed = set()  # (channel, frame id) of frames reassembled
        self.stray = []  # chunks of frames already reassembled
        self.last_lossy = 0.0  # loop time of the last lossy-channel message
        self.failure = None

    def fail(self, msg):
        log("FAIL:", msg)
        if self.failure is None:
            self.failure = msg
        for f in [self.all_reliable, *self.replies.values()]:
            if not f.done():
                f.set_exception(RuntimeError(msg))

    def on_message(self, label, msg):
        if label == "fanhub-lossy":
            self.last_lossy = self.loop.time()
        try:
            if isinstance(msg, str):
                self.on_control(label, msg)
            else:
                self.on_binary(label, msg)
        except Exception as e:  # noqa: BLE001 — any parse error fails the run
            self.fail(f"bad message on {label}: {e!r}")

    def on_control(self, label, text):
        if label != "fanhub":
            self.fail(f"a text message on {label}: {text[:200]}")
            return
        m = json.loads(text)
        fut = self.replies.get(m.get("id"))
        if fut is not None and not fut.done():
            fut.set_result(m)
        elif m.get("type") in ("error", "bye"):
            self.fail(f"server said {text}")
        else:
            log("control:", text[:300])

    def on_binary(self, label, data):
        if data[:1] == bytes([CHUNK_MAGIC]):
            if len(data) < CHUNK_HEADER.size:
                raise ValueError(f"short chunk ({len(data)} bytes)")
            magic, reserved, index, count, frame = CHUNK_HEADER.unpack_from(data)
            if reserved != 0 or count == 0 or index >= count:
                raise ValueError(f"bad chunk header {(magic, reserved, index, count, frame)}")
            key = (label, frame)
            if key in self.completed:
                # A chunk of a frame already whole: the message was delivered twice.
                self.stray.append({"channel": label, "frame": frame, "index": index, "count": count})
                log(f"stray chunk {label} frame {frame} {index}/{count}")
                return
            parts = self.partial.setdefault(key, [None] * count)
            if len(parts) != count:
                raise ValueError(f"frame {frame}: chunk count {count} after {len(parts)}")
            if parts[index] is not None:
                raise ValueError(f"frame {frame}: chunk {index} twice")
            parts[index] = bytes(data[CHUNK_HEADER.size:])
            if all(p is not None for p in parts):
                del self.partial[key]
                self.completed.add(key)
                self.records(label, b"".join(parts))
        else:
            self.records(label, bytes(data))

    def records(self, label, buf):
        p = 0
        while p < len(buf):
            if len(buf) - p < RECORD_HEADER.size:
                raise ValueError(f"truncated record header at {p} of {len(buf)}")
            kind, _flags, tlen, plen, offset, epoch, _ts = RECORD_HEADER.unpack_from(buf, p)
            if kind != RECORD_KIND:
                raise ValueError(f"record kind {kind:#x} at {p}")
            start = p + RECORD_HEADER.size
            end = start + tlen + plen
            if end > len(buf):
                raise ValueError(f"truncated record at {p}: needs {end}, has {len(buf)}")
            topic = buf[start:start + tlen].decode()
            payload = buf[start + tlen:end]
            emit({
                "topic": topic,
                "offset": offset,
                "epoch": epoch,
                "len": plen,
                "sha1": hashlib.sha1(payload).hexdigest(),
                "channel": label,
            })
            if topic == self.topic_reliable:
                self.reliable_count += 1
                if self.reliable_count >= self.n_frames and not self.all_reliable.done():
                    self.all_reliable.set_result(None)
            p = end


async def request(peer, channel, msg, timeout=10):
    fut = peer.loop.create_future()
    peer.replies[msg["id"]] = fut
    channel.send(json.dumps(msg))
    try:
        return await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        raise Fail(f"no reply to {msg['op']} (id {msg['id']}) in {timeout} s") from None
    finally:
        peer.replies.pop(msg["id"], None)


PEER = None  # for the timeout message


async def run(base_url, token, topic_reliable, topic_lossy, n_frames):
    global PEER
    peer = PEER = Peer(topic_reliable, topic_lossy, n_frames)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await session(pc, peer, base_url, token)
    finally:
        try:
            await asyncio.wait_for(pc.close(), 5)
        except Exception as e:  # noqa: BLE001 — closing is best effort
            log("close:", repr(e))


async def session(pc, peer, base_url, token):
    control = pc.createDataChannel("fanhub")
    lossy = pc.createDataChannel("fanhub-lossy", ordered=False, maxRetransmits=0)
    opened = {label: peer.loop.create_future() for label in ("fanhub", "fanhub-lossy")}
    for ch in (control, lossy):
        label = ch.label
        ch.on("open", lambda label=label: opened[label].done() or opened[label].set_result(None))
        ch.on("message", lambda msg, label=label: peer.on_message(label, msg))
        ch.on("close", lambda label=label: log(f"channel {label} closed"))

    @pc.on("connectionstatechange")
    def _state():
        log("connection state:", pc.connectionState)
        if pc.connectionState == "failed":
            peer.fail("the peer connection failed")

    # setLocalDescription gathers candidates (no trickle): the SDP is complete after it.
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    assert_loopback_only("offer", offer)
    status, headers, body = await asyncio.to_thread(post_offer, base_url, token, offer)
    if status != 201:
        raise Fail(f"POST /v1/rtc/offer answered {status}: {body}")
    ctype = headers.get("Content-Type") or ""
    if not ctype.startswith("application/sdp"):
        raise Fail(f"the answer's Content-Type is {ctype!r}, not application/sdp")
    location = headers.get("Location") or ""
    if not location.startswith("/v1/rtc/sessions/"):
        raise Fail(f"the answer's Location is {location!r}, not /v1/rtc/sessions/{{id}}")
    log("answer for", location)
    assert_loopback_only("answer", body)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    await asyncio.gather(*opened.values())
    log("both channels open")
    w = await request(peer, control, {"op": "connect", "id": 1})
    if w.get("type") != "welcome":
        raise Fail(f"connect answered {w}")
    for i, topic in ((2, peer.topic_reliable), (3, peer.topic_lossy)):
        s = await request(peer, control, {"op": "subscribe", "id": i, "topic": topic})
        if s.get("type") != "subscribed":
            raise Fail(f"subscribe {topic} answered {s}")
    log("subscribed")
    emit({"ready": True})

    await peer.all_reliable
    log("every reliable record")
    # Settle: until the lossy channel has been quiet for LOSSY_SETTLE_S (aiortc may still be
    # reassembling a large best-effort frame sent after the last reliable one), bounded.
    settle_end = peer.loop.time() + SETTLE_MAX_S
    while peer.loop.time() < settle_end:
        quiet = peer.loop.time() - peer.last_lossy
        if quiet >= LOSSY_SETTLE_S:
            break
        await asyncio.sleep(LOSSY_SETTLE_S - quiet)
    if peer.failure:
        raise Fail(peer.failure)
    incomplete = {}
    for (label, frame), parts in peer.partial.items():
        have = [i for i, p in enumerate(parts) if p is not None]
        incomplete.setdefault(label, []).append({"frame": frame, "count": len(parts), "have": have})
    closed = None
    t0 = peer.loop.time()
    try:
        closed = (await request(peer, control, {"op": "bye", "id": 9}, timeout=BYE_TIMEOUT_S)).get("type")
    except Exception as e:  # noqa: BLE001 — reported in the done line
        log("bye:", repr(e))
    bye_ms = round((peer.loop.time() - t0) * 1000)
    emit({"done": True, "incomplete": incomplete, "stray": peer.stray, "closed": closed, "bye_ms": bye_ms})


def main():
    if len(sys.argv) != 6:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    base_url, token, topic_reliable, topic_lossy, n = sys.argv[1:]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def bounded():
        await asyncio.wait_for(run(base_url, token, topic_reliable, topic_lossy, int(n)), HARD_TIMEOUT_S)

    try:
        asyncio.run(bounded())
    except asyncio.TimeoutError:
        progress = ""
        if PEER is not None:
            partial = {f"{label}/{frame}": f"{sum(p is not None for p in parts)}/{len(parts)}"
                       for (label, frame), parts in PEER.partial.items()}
            progress = f": {PEER.reliable_count}/{PEER.n_frames} reliable records, partial frames {partial}"
        log(f"timed out after {HARD_TIMEOUT_S:.0f} s{progress}")
        return 3
    except Fail as e:
        log("FAIL:", e)
        return 1
    except Exception as e:  # noqa: BLE001
        log("FAIL:", repr(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
