// The tunnel's MTU follows its smallest path (Protocol/Connectivity/PathMTU.swift).
//
//   lane 0:  path added/removed (NodeCore's pathChanged), uplinks re-read
//            (RouteMonitor), and once a second (a path that died)
//              ─▶ NodeCore.dataPaths(now:) + per path its uplink (the main table's
//                 route to its remote) and that uplink's MTU (SIOCGIFMTU, cached
//                 until the routes or links change)
//              ─▶ TunnelMTU.update ─▶ changed: SIOCSIFMTU on the TUN, one info line;
//                 per member limits into `limits` (atomics every lane reads)
//   any lane, per TUN read (DataPath's tunPacket, one call):
//            a packet (or a GSO super-packet's segment) above its member's limit
//              ─▶ dropped (`mtu_exceeded`), and answered with an ICMP frag-needed
//                 (IPv4, DF set) / Packet Too Big (IPv6) written into the TUN
//                 (Wire/PacketTooBig.swift), at most 20/s per lane
//
// With the TUN's MTU lowered the kernel itself answers what it forwards or
// sends into the tunnel with ICMP / EMSGSIZE; the check here catches packets
// that were already queued (or already cut into larger GSO segments) when the
// MTU fell. Nothing here allocates per packet: one array read and one atomic
// load per TUN read, the error built in the lane's own buffer.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Atomics
import Reactor
import Logging

/// Lane 0's MTU state and the per-member limits all lanes read.
final class MTUControl: @unchecked Sendable {
    /// Lane 0 only.
    var state: TunnelMTU
    /// Set by a path change; lane 0 recalculates at the end of `service`.
    var pending = false
    /// Uplink MTUs read since the routes last changed (lane 0 only).
    var uplinkMTUs: [String: Int] = [:]
    var timer: TimerID?
    var loggedBelowMinimum: UInt64 = 0
    /// The last MTU the kernel refused (logged once, retried on every recalculation).
    var refused: Int?
    /// Off in the WireGuard drop-in mode (its MTU is the user's).
    let enabled: Bool
    /// Per member (PeerID), the largest packet read from the TUN that may go
    /// to it. Written by lane 0, read by every lane (relaxed: a packet checked
    /// against the previous value for a moment is harmless).
    let limits: [ManagedAtomic<Int>]
    /// An uplink whose MTU cannot be read (gone, or no route): assumed Ethernet's.
    static let assumedUplinkMTU = 1500
    static let recheckNs: UInt64 = 1_000_000_000

    init(configured: Int?, initial: Int, peers: Int, enabled: Bool) {
        state = TunnelMTU(configured: configured, defaultMTU: initial, peers: peers)
        self.enabled = enabled
        limits = (0..<peers).map { _ in ManagedAtomic<Int>(enabled ? initial : Int.max) }
    }

    @inline(__always)
    func limit(_ peer: PeerID) -> Int {
        let i = peer.rawValue
        guard i < limits.count else { return Int.max }
        return limits[i].load(ordering: .relaxed)
    }
}

/// A lane's buffer and rate limit for the ICMP errors it writes.
final class LaneMTUGuard {
    let buffer: UnsafeMutableRawPointer
    var limiter = PacketTooBigLimiter()

    init() { buffer = .allocate(byteCount: PacketTooBig.bufferSize, alignment: 16) }
    deinit { buffer.deallocate() }
}

extension Daemon {
    /// At start (not in the drop-in mode): the first calculation, and the once-a-second recheck.
    func startMTU(now: Instant) {
        guard mtuControl.enabled else { return }
        recomputeMTU(now: now)
        armMTUTimer()
    }

    private func armMTUTimer() {
        mtuControl.timer = reactor.addTimer(after: MTUControl.recheckNs) { [unowned self] in
            self.mtuControl.timer = nil
            self.recomputeMTU(now: Self.now())
            self.armMTUTimer()
        }
    }

    func stopMTU() {
        if let t = mtuControl.timer { reactor.cancelTimer(t) }
        mtuControl.timer = nil
    }

    /// The routes or links changed: uplink MTUs are read again.
    func mtuUplinksChanged(now: Instant) {
        guard mtuControl.enabled else { return }
        mtuControl.uplinkMTUs.removeAll(keepingCapacity: true)
        recomputeMTU(now: now)
    }

    /// The MTU of the uplink `name` (cached until the routes change).
    func uplinkMTU(_ name: String?) -> Int {
        guard let name else { return MTUControl.assumedUplinkMTU }
        if let m = mtuControl.uplinkMTUs[name] { return m }
        let m = NetworkInterface.mtu(name) ?? MTUControl.assumedUplinkMTU
        mtuControl.uplinkMTUs[name] = m
        return m
    }

    /// The MTU of one path as the status shows it (`paths[].mtu`).
    func pathMTU(remote: Endpoint, relayed: Bool) -> Int {
        let uplink = Uplinks.lookup(kernelRoutes, family: remote.family, address: remote.address)
        return PathMTU.inner(uplinkMTU: uplinkMTU(uplink), remote: remote.family, relayed: relayed)
    }

    /// Recalculates the tunnel's MTU from the paths data goes on now and applies a change.
    func recomputeMTU(now: Instant) {
        let c = mtuControl
        c.pending = false
        guard c.enabled else { return }
        let paths = core.dataPaths(now: now).map { p -> TunnelMTU.Path in
            let uplink = Uplinks.lookup(kernelRoutes, family: p.remote.family, address: p.remote.address)
            return TunnelMTU.Path(peer: p.peer, peerName: p.name, kind: p.kind, remote: p.remote, relayed: p.via != nil,
                                  uplink: uplink, uplinkMTU: uplinkMTU(uplink))
        }
        let (change, limitsChanged) = c.state.update(paths, now: now)
        if limitsChanged {
            for (i, v) in c.state.peerLimits.enumerated() where i < c.limits.count {
                c.limits[i].store(v, ordering: .relaxed)
            }
        }
        if c.state.belowMinimum != c.loggedBelowMinimum {
            c.loggedBelowMinimum = c.state.belowMinimum
            if let s = c.state.smallest {
                logger.notice("mtu: path \(s) allows only \(s.mtu) bytes (uplink MTU \(s.uplinkMTU)); keeping the IPv6 minimum \(PathMTU.minimum)")
            }
        }
        guard let change else { return }
        do {
            try NetworkInterface.setMTU(tun.name, change.new)
        } catch {
            c.state.notApplied(change)
            lanes[0].count("mtu_set_failed")
            if c.refused != change.new { logger.notice("mtu: setting \(tun.name) to \(change.new) failed: \(error); keeping \(change.old)") }
            c.refused = change.new
            return
        }
        c.refused = nil
        let why = change.smallest.map { "smallest path: \($0)" } ?? "no active path"
        logger.info("mtu: \(change.old) -> \(change.new) (\(why))")
    }
}

extension Lane {
    /// Whether the TUN read at `p` is too big for `peer`'s paths: then it is
    /// dropped (counted) and answered with an ICMP error into the TUN. One
    /// compare per read unless it is.
    @inline(__always)
    func exceedsPathMTU(_ peer: PeerID, _ p: UnsafeMutableRawPointer, length len: Int, header h: VirtioNetHeader,
                        now: Instant) -> Bool {
        let limit = daemon.mtuControl.limit(peer)
        if !h.isGSO {
            guard len > limit else { return false }
        } else {
            // Headers are at most 60 + 60 bytes (IPv4 options, TCP options; IPv6 40 + 60):
            // only a segment size near the limit needs the exact look.
            guard Int(h.gsoSize) + 120 > limit else { return false }
            guard case .split(let plan) = Offload.plan(p, length: len, header: h), plan.segmentLength > limit else { return false }
        }
        packetTooBig(p, length: len, limit: limit, now: now)
        return true
    }

    private func packetTooBig(_ p: UnsafeMutableRawPointer, length len: Int, limit: Int, now: Instant) {
        count("mtu_exceeded")
        let g = mtuGuard
        switch PacketTooBig.build(packet: p, length: len, mtu: limit, into: g.buffer) {
        case .skip(let why):
            count(why.counter)
        case .built(let n):
            guard g.limiter.allow(now: now) else {
                count("mtu_icmp_rate_limited")
                return
            }
            if tun.write(g.buffer, length: n) { count("mtu_icmp_sent") } else { count("tun_write") }
        }
    }
}

extension PacketTooBig.Skip {
    /// The counter for an oversized packet not answered for this reason, built once.
    var counter: String { Self.counters[self]! }
    private static let counters = Dictionary(uniqueKeysWithValues: allCases.map { ($0, "mtu_icmp_skipped_" + $0.rawValue) })
}
