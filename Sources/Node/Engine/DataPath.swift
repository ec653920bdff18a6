// The data path: TUN → seal → UDP, and UDP → open → TUN, in batches, in place,
// with the kernel's offloads doing the per-packet work wherever it can.
//
//   TUN read (TSO: one 64 KiB TCP super-packet per read, vnet header in front)
//     │ vnet header parsed; NEEDS_CSUM completed; cryptokey route on the destination
//     │ super-packet: Offload.plan + split, segment by segment into the arena,
//     │   each at DATA-header offset in a slot of (16 + segment + 16) bytes
//     │ Tunnels.send seals each segment in place (header before, tag after)
//     ▼ equal consecutive datagrams to one endpoint become one UDP GSO view
//   one sendmmsg for the batch (each GSO view one sendmsg's worth: up to 64 datagrams)
//
//   UDP recvmmsg (GRO: one view may be a run of equal datagrams)
//     │ every datagram of every run: Tunnels.receive opens it in place
//     │ cryptokey route, inbound: the inner source must be the member's
//     ▼ GSOCoalescer: in-order TCP segments, or equal UDP datagrams, of one flow → one super-packet (no copy)
//   one writev per (super-)packet to the TUN device, vnet header in front
//
// Memory: packets stay in the reactor's slabs (TunDevice, DatagramSocket)
// except TSO segments, which are cut into `DataPathBuffers.arena` (headers must
// go in front of every segment, so one copy there is unavoidable); sealing and
// opening are in place. Nothing here allocates. Every drop is counted by reason.
import CReactor
import Reactor

private let EINVAL_: Int32 = 22

extension DropReason {
    /// The counter for an outbound packet dropped for this reason ("send_" + the reason),
    /// built once: counting a drop on the TUN path allocates nothing.
    var sendCounter: String { Self.sendCounters[self]! }
    private static let sendCounters = Dictionary(uniqueKeysWithValues: allCases.map { ($0, "send_" + $0.rawValue) })
}

/// The data path's own memory, allocated once per daemon.
final class DataPathBuffers {
    /// Views for one outgoing batch (sealed packets in the TUN slab, GSO runs in the arena).
    let out: UnsafeMutablePointer<CReactor_dgram>
    let outCapacity: Int
    /// Where TSO segments are cut and sealed: slots of (DATA header, segment, tag).
    let arena: UnsafeMutableRawPointer
    let arenaSize: Int
    let coalescer: GSOCoalescer
    /// One TUN write: vnet header, head packet, payload pieces.
    let iov: UnsafeMutablePointer<CReactor_iovec>
    let iovCapacity: Int
    let vnet: UnsafeMutableRawPointer
    /// Off for good once the kernel refused a GSO write (EINVAL): then every segment is written alone.
    var coalescing = true

    init(outCapacity: Int = 512, arenaSize: Int = 2 << 20) {
        self.outCapacity = outCapacity
        out = .allocate(capacity: outCapacity)
        out.initialize(repeating: CReactor_dgram(), count: outCapacity)
        self.arenaSize = arenaSize
        arena = .allocate(byteCount: arenaSize, alignment: 64)
        coalescer = GSOCoalescer(maxGroups: 2048, maxPieces: 4096)
        iovCapacity = GSOCoalescer.maxSegmentsPerPacket + 2
        iov = .allocate(capacity: iovCapacity)
        iov.initialize(repeating: CReactor_iovec(), count: iovCapacity)
        vnet = .allocate(byteCount: 16, alignment: 16)
    }

    deinit {
        out.deallocate()
        arena.deallocate()
        iov.deallocate()
        vnet.deallocate()
    }
}

extension Daemon {
    // MARK: TUN → UDP

    func tunRead(_ batch: TunBatch) {
        let now = Self.now()
        let st = fast
        var n = 0     // views in st.out
        var used = 0  // arena bytes holding segments not yet sent
        for i in 0..<batch.count {
            let (p, len) = batch.packet(i)
            var h = VirtioNetHeader.none
            if let raw = batch.vnetHeader(i) {
                guard let parsed = VirtioNetHeader(raw) else {
                    count(OffloadDrop.badVnetHeader.rawValue)
                    continue
                }
                h = parsed
            }
            guard let (dst, fam) = IPHeader.destination(p, length: len) else {
                count("tun_not_ip")
                continue
            }
            guard let peer = routes.lookup(dst, family: fam) else {
                count("no_route")
                continue
            }
            let id = PeerID(rawValue: peer)
            if !h.isGSO {
                // One packet: complete its checksum if the kernel left it to us, seal where it lies.
                guard Offload.completeChecksum(p, length: len, header: h) else {
                    count(OffloadDrop.badVnetHeader.rawValue)
                    continue
                }
                if n == st.outCapacity {
                    sendOut(n)
                    n = 0
                    used = 0
                }
                let buf = UnsafeMutableRawBufferPointer(start: p - Self.headroom, count: Self.headroom + batch.capacity(i))
                switch core.sendPacket(to: id, buf, payloadOffset: Self.headroom, payloadLength: len, now: now) {
                case .send(let ep, let offset, let length):
                    st.out[n] = CReactor_dgram()
                    st.out[n].data = (buf.baseAddress! + offset).assumingMemoryBound(to: UInt8.self)
                    st.out[n].len = UInt32(length)
                    st.out[n].peer = ep.creactor
                    n += 1
                case .queued:
                    break
                case .drop(let reason):
                    count(reason.sendCounter)
                }
                continue
            }
            // A super-packet: cut into segments, seal each, send equal runs with GSO.
            let plan: Offload.Plan
            switch Offload.plan(p, length: len, header: h) {
            case .drop(let why):
                count(why.rawValue)
                continue
            case .split(let pl):
                plan = pl
            }
            // Header room per slot: DATA, plus RELAY when this peer goes through an anchor.
            let room = core.headerRoom(for: id)
            let stride = plan.segmentLength + room + DataMessage.tagSize
            let perRun = max(1, min(DatagramSocket.maxGSOSegments, DatagramSocket.maxGSOBytes / stride))
            var s = 0
            while s < plan.count {
                let k = min(plan.count - s, perRun)
                if used + k * stride > st.arenaSize || n + k > st.outCapacity {
                    sendOut(n)
                    n = 0
                    used = 0
                }
                let base = st.arena + used
                Offload.split(p, plan: plan, segments: s..<(s + k), into: base + room, stride: stride)
                var run = -1
                var runEndpoint = Endpoint(family: .v4, address: IPAddressBytes(), port: 0)
                for j in 0..<k {
                    let slot = base + j * stride
                    let buf = UnsafeMutableRawBufferPointer(start: slot, count: stride)
                    switch core.sendPacket(to: id, buf, payloadOffset: room,
                                           payloadLength: plan.length(ofSegment: s + j), now: now) {
                    case .send(let ep, let offset, let length):
                        let d = (slot + offset).assumingMemoryBound(to: UInt8.self)
                        if run >= 0, ep == runEndpoint, st.out[run].data + Int(st.out[run].len) == d,
                           Int(st.out[run].len) % Int(st.out[run].segment) == 0, length <= Int(st.out[run].segment) {
                            st.out[run].len += UInt32(length)
                        } else {
                            st.out[n] = CReactor_dgram()
                            st.out[n].data = d
                            st.out[n].len = UInt32(length)
                            st.out[n].segment = UInt16(truncatingIfNeeded: length)
                            st.out[n].peer = ep.creactor
                            run = n
                            runEndpoint = ep
                            n += 1
                        }
                    case .queued:
                        run = -1
                    case .drop(let reason):
                        count(reason.sendCounter)
                        run = -1
                    }
                }
                used += k * stride
                s += k
            }
        }
        sendOut(n)
        service(now: now)
    }

    /// Sends views 0..<n of the outgoing batch; what the socket could not take is counted.
    private func sendOut(_ n: Int) {
        guard n > 0 else { return }
        let out = fast.out
        let sent = udp.send(DatagramBatch(base: out, count: n))
        if sent < n { countUnsent(out, sent..<n) }
    }

    // MARK: UDP → TUN

    func udpReceived(_ batch: DatagramBatch) {
        let now = Self.now()
        let coalescer = tun.vnetHeader && fast.coalescing ? fast.coalescer : nil
        var forwards = 0
        for i in 0..<batch.count {
            let d = batch[i]
            let total = Int(d.pointee.len)
            let seg = Int(d.pointee.segment)
            // A GRO run is `segment`-byte datagrams back to back (the last may be shorter).
            let step = seg > 0 && seg < total ? seg : max(total, 1)
            let from = Endpoint(d.pointee.peer)
            var off = 0
            repeat {
                let length = min(step, total - off)
                let buf = UnsafeMutableRawBufferPointer(start: d.pointee.data + off, count: Int(d.pointee.cap) - off)
                off += step
                let type = length > 0 ? buf[0] : 0
                // Handshake messages (types 1, 2) feed the load meter; under load they must carry a cookie (mac2).
                let underLoad = (type == 1 || type == 2) ? loadMeter.record(now: now) : false
                switch core.receive(buf, length: length, from: from, now: now, underLoad: underLoad) {
                case .packet(let peer, let offset, let length):
                    guard length > 0 else { continue }  // keepalive
                    let p = buf.baseAddress! + offset
                    guard let (src, fam) = IPHeader.source(p, length: length) else {
                        count("inner_not_ip")
                        continue
                    }
                    // Cryptokey routing, inbound: the inner source must be one of this member's addresses.
                    guard routes.allows(peer: peer.rawValue, source: src, family: fam) else {
                        count("inner_source_not_allowed")
                        continue
                    }
                    if let coalescer {
                        if !coalescer.add(p, length: length) {
                            writeCoalesced(coalescer)
                            coalescer.add(p, length: length)
                        }
                    } else if !tun.write(p, length: length) {
                        count("tun_write")
                    }
                case .transmit(let ep, let offset, let length):
                    // Relayed on (anchor) or a probe answered: sent from where it lies, in this batch.
                    // A GRO run relayed to one member stays one run: its datagrams lie back to back,
                    // so the run goes out as one UDP GSO send, as it came in.
                    let data = (buf.baseAddress! + offset).assumingMemoryBound(to: UInt8.self)
                    if forwards > 0, Self.extendRun(out + (forwards - 1), data: data, length: length, to: ep) { continue }
                    if forwards == Self.batch {
                        flush(forwards)
                        forwards = 0
                    }
                    out[forwards] = CReactor_dgram()
                    out[forwards].data = data
                    out[forwards].len = UInt32(length)
                    out[forwards].segment = UInt16(truncatingIfNeeded: length)
                    out[forwards].peer = ep.creactor
                    forwards += 1
                case .consumed:
                    break
                case .drop(let reason):
                    count(reason.name)
                }
            } while off < total
        }
        flush(forwards)
        if let coalescer, !coalescer.isEmpty { writeCoalesced(coalescer) }
        service(now: now)
    }

    /// Appends a datagram to the GSO run in `v` when it can be one more of its
    /// segments: the same destination, right behind it in memory, no longer
    /// than the run's segment size, and the run neither closed by a shorter
    /// datagram nor full.
    static func extendRun(_ v: UnsafeMutablePointer<CReactor_dgram>, data: UnsafeMutablePointer<UInt8>, length: Int,
                           to ep: Endpoint) -> Bool {
        let seg = Int(v.pointee.segment)
        let len = Int(v.pointee.len)
        guard seg > 0, len % seg == 0, length <= seg, v.pointee.data + len == data,
              len / seg < DatagramSocket.maxGSOSegments, len + length <= DatagramSocket.maxGSOBytes else { return false }
        guard Endpoint(v.pointee.peer) == ep else { return false }
        v.pointee.len += UInt32(length)
        return true
    }

    /// One TUN write per packet or super-packet the coalescer holds, in order.
    private func writeCoalesced(_ coalescer: GSOCoalescer) {
        let st = fast
        let tun = self.tun!
        coalescer.flush { o in
            guard !o.pieces.isEmpty else {
                if !tun.write(o.head, length: o.headLength) { count("tun_write") }
                return
            }
            o.header.write(to: st.vnet)
            st.iov[0] = CReactor_iovec(base: st.vnet, len: VirtioNetHeader.size)
            st.iov[1] = CReactor_iovec(base: o.head, len: o.headLength)
            for (j, piece) in o.pieces.enumerated() {
                st.iov[2 + j] = CReactor_iovec(base: UnsafeMutableRawPointer(mutating: piece.base), len: piece.length)
            }
            if tun.writeGather(st.iov, count: 2 + o.pieces.count) { return }
            guard tun.lastWriteErrno == EINVAL_ else {
                count("tun_write")
                return
            }
            // Degrade once, loudly: this kernel takes no GSO writes (of this kind). Write this one's segments alone.
            if o.header.gsoType == VirtioNetHeader.gsoUDPL4 {
                if coalescer.udp {
                    coalescer.udp = false
                    logger.notice("tun: UDP GSO write refused (EINVAL); writing UDP one datagram at a time from now on")
                }
            } else if st.coalescing {
                st.coalescing = false
                logger.notice("tun: GSO write refused (EINVAL); writing one packet per segment from now on")
            }
            GSOCoalescer.restoreHead(o)
            if !tun.write(o.head, length: o.headLength) { count("tun_write") }
            let hl = Int(o.header.headerLength)
            for piece in o.pieces where !tun.write(piece.base - hl, length: piece.length + hl) { count("tun_write") }
        }
    }
}
