// The data path of one lane (Lane.swift): TUN → seal → UDP, and UDP → open →
// TUN, in batches, in place, with the kernel's offloads doing the per-packet
// work wherever it can. Sealing and opening are the owning lane's
// (SessionShard) at every reactor count: with one reactor, lane 0's shard owns
// every session. NodeCore seals only what the owner hands it (no keys or path yet).
//
//   TUN read (TSO: one 64 KiB TCP super-packet per read, vnet header in front)
//     │ vnet header parsed; NEEDS_CSUM completed; cryptokey route on the destination
//     │ a peer another lane owns: the whole read to its ring (Lane.swift), done here
//     │ super-packet: Offload.plan + split, segment by segment into the arena,
//     │   each at DATA-header offset in a slot of (16 + segment + 16) bytes
//     │ the owner seals each segment in place (header before, tag after)
//     ▼ equal consecutive datagrams to one endpoint become one UDP GSO view
//   one sendmmsg for the batch (each GSO view one sendmsg's worth: up to 64 datagrams)
//
//   UDP recvmmsg (GRO: one view may be a run of equal datagrams)
//     │ every datagram of every run: its owner opens it in place (DATA of another
//     │   lane's peer, or anything for NodeCore from lanes 1...: to that lane's ring)
//     │ cryptokey route, inbound: the inner source must be the member's
//     ▼ GSOCoalescer: in-order TCP segments, or equal UDP datagrams, of one flow → one super-packet (no copy)
//   one writev per (super-)packet to the TUN device, vnet header in front
//
// Memory: packets stay in the reactor's slabs (TunDevice, DatagramSocket)
// except TSO segments, which are cut into `DataPathBuffers.arena` (headers must
// go in front of every segment, so one copy there is unavoidable), and packets
// handed to another lane (one copy into the ring, sealed or opened in place
// there); sealing and opening are in place. Nothing here allocates. Every
// drop is counted by reason.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
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
    let out: UnsafeMutablePointer<DatagramView>
    let outCapacity: Int
    /// Where TSO segments are cut and sealed: slots of (DATA header, segment, tag).
    let arena: UnsafeMutableRawPointer
    let arenaSize: Int
    let coalescer: GSOCoalescer
    /// One TUN write: vnet header, head packet, payload pieces.
    let iov: UnsafeMutablePointer<IOVector>
    let iovCapacity: Int
    let vnet: UnsafeMutableRawPointer
    /// A copy of a super-packet's headers while its segments are cut where they lie
    /// (`Offload.cutInPlace`); longer headers go through `Offload.split`.
    let headers: UnsafeMutableRawPointer
    static let headersCapacity = 256
    /// Off for good once the kernel refused a GSO write (EINVAL): then every segment is written alone.
    var coalescing = true

    init(outCapacity: Int = 512, arenaSize: Int = 2 << 20) {
        self.outCapacity = outCapacity
        out = .allocate(capacity: outCapacity)
        out.initialize(repeating: DatagramView(), count: outCapacity)
        self.arenaSize = arenaSize
        arena = .allocate(byteCount: arenaSize, alignment: 64)
        coalescer = GSOCoalescer(maxGroups: 2048, maxPieces: 4096)
        iovCapacity = GSOCoalescer.maxSegmentsPerPacket + 2
        iov = .allocate(capacity: iovCapacity)
        iov.initialize(repeating: IOVector(), count: iovCapacity)
        vnet = .allocate(byteCount: 16, alignment: 16)
        headers = .allocate(byteCount: Self.headersCapacity, alignment: 64)
    }

    deinit {
        out.deallocate()
        arena.deallocate()
        iov.deallocate()
        vnet.deallocate()
        headers.deallocate()
    }
}

extension Lane {
    // MARK: Batches

    func beginBatch() {
        outCount = 0
        arenaUsed = 0
        forwards = 0
    }

    /// Sends what the batch sealed and forwarded, writes what it opened, passes
    /// on reports and wakes the lanes it handed work to; lane 0 then drains NodeCore.
    func endBatch(now: Instant) {
        sendOut(outCount)
        outCount = 0
        arenaUsed = 0
        flushForwards()
        if tun.vnetHeader, fast.coalescing, !fast.coalescer.isEmpty { writeCoalesced(fast.coalescer) }
        if releasingCount > 0 { releaseDelivered() }
        if !reorder.buffering.isEmpty { armReorderTimer() }
        flushReports(now: now, force: false)
        if outbound.contains(where: { $0 != nil }) { wakeWritten() }
        publishSoon(now: now)
        if id == 0, touchedCore {
            touchedCore = false
            daemon.service(now: now)
        }
    }

    /// The shard's reports: applied to NodeCore on lane 0, handed to lane 0 elsewhere.
    func flushReports(now: Instant, force: Bool) {
        let next = shard.flushActivity(now: now, force: force)
        while let r = shard.pollReport() {
            if id == 0 {
                daemon.core.applyShardReport(r, now: now)
                touchedCore = true
            } else {
                handoff(report: r)
            }
        }
        if let next, reportTimer == nil {
            reportTimer = reactor.addTimer(at: next.ns, reportTimerFired)
        }
    }

    // MARK: TUN → UDP

    func tunRead(_ batch: TunBatch) {
        let now = Daemon.now()
        beginBatch()
        for i in 0..<batch.count {
            let (p, len) = batch.packet(i)
            tunPacket(p, length: len, capacity: batch.capacity(i), vnetHeader: batch.vnetHeader(i), now: now, forCore: false)
        }
        endBatch(now: now)
    }

    /// One TUN read: a packet, or a TSO super-packet (vnet header in front) to cut.
    /// `forCore`: lane 0 only, a packet whose owner had no keys or path: NodeCore seals or queues it.
    func tunPacket(_ p: UnsafeMutableRawPointer, length len: Int, capacity: Int, vnetHeader raw: UnsafeRawBufferPointer?,
                   now: Instant, forCore: Bool) {
        let st = fast
        var h = VirtioNetHeader.none
        if let raw {
            guard let parsed = VirtioNetHeader(raw) else {
                count(OffloadDrop.badVnetHeader.rawValue)
                return
            }
            h = parsed
        }
        guard let (dst, fam) = IPHeader.destination(p, length: len) else {
            count("tun_not_ip")
            return
        }
        guard let peer = daemon.routes.lookup(dst, family: fam) else {
            count("no_route")
            return
        }
        let id = PeerID(rawValue: peer)
        // Another lane owns this peer's session: the whole read goes there, vnet header and all.
        if !forCore, SessionOwnership.owner(of: id, owners: owners) != self.id {
            var hdr = Handoff(kind: .tun)
            if let raw {
                hdr.vnetLength = UInt8(min(raw.count, 16))
                withUnsafeMutableBytes(of: &hdr.vnet) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<Int(hdr.vnetLength)])) }
            }
            handoff(to: SessionOwnership.owner(of: id, owners: owners), hdr, p, length: len)
            count("handoff_tun_reads")
            return
        }
        // Above the member's path MTU (MTUControl.swift): dropped, answered with ICMP.
        if exceedsPathMTU(id, p, length: len, header: h, now: now) { return }
        let headroom = Daemon.headroom
        // A peer whose session negotiated header flags takes checksums left partial (Wire/DataMessage.swift).
        let peerTakesPartial = !forCore && h.needsChecksumCompletion && shard.sendsHeaderFlags(to: id)
        if !h.isGSO {
            // One packet: its checksum left partial for such a peer when the packet says where it
            // lies; else completed if the kernel left it to us. Sealed where it lies.
            var flags: UInt8 = 0
            if peerTakesPartial, let place = Offload.checksumPlace(p, length: len),
               place.start == Int(h.checksumStart), place.offset == Int(h.checksumOffset) {
                flags = DataMessage.checksumPartial
            } else if !Offload.completeChecksum(p, length: len, header: h) {
                count(OffloadDrop.badVnetHeader.rawValue)
                return
            }
            if outCount == st.outCapacity {
                sendOut(outCount)
                outCount = 0
                arenaUsed = 0
            }
            let buf = UnsafeMutableRawBufferPointer(start: p - headroom, count: headroom + capacity)
            if let (ep, offset, length) = seal(id, buf, payloadOffset: headroom, payloadLength: len, flags: flags, source: nil,
                                               now: now, forCore: forCore) {
                st.out[outCount] = DatagramView()
                st.out[outCount].data = (buf.baseAddress! + offset).assumingMemoryBound(to: UInt8.self)
                st.out[outCount].len = UInt32(length)
                st.out[outCount].peer = ep.socketAddress
                outCount += 1
            }
            return
        }
        // A super-packet: cut into segments, seal each, send equal runs with GSO.
        let plan: Offload.Plan
        switch Offload.plan(p, length: len, header: h) {
        case .drop(let why):
            count(why.rawValue)
            return
        case .split(let pl):
            plan = pl
        }
        // Header room per slot: DATA, plus RELAY when this peer goes through an anchor.
        let room = !forCore ? shard.headerRoom(for: id) : daemon.core.headerRoom(for: id)
        let partial = peerTakesPartial && Offload.checksumPlace(p, length: len)?.start == plan.transportOffset
        let flags = partial ? DataMessage.checksumPartial : 0
        // The shard's sessions: each segment is cut where it lies and sealed from there into
        // its slot (no copy of its payload); NodeCore's (`forCore`) gets copies in the slots.
        let inPlace = !forCore && plan.headerLength <= DataPathBuffers.headersCapacity
        let segmentBase = inPlace ? Offload.SegmentBase(headers: p, plan: plan) : nil  // split derives its own
        if inPlace { st.headers.copyMemory(from: p, byteCount: plan.headerLength) }
        let stride = plan.segmentLength + room + DataMessage.tagSize
        let perRun = max(1, min(DatagramSocket.maxGSOSegments, DatagramSocket.maxGSOBytes / stride))
        var s = 0
        while s < plan.count {
            let k = min(plan.count - s, perRun)
            if arenaUsed + k * stride > st.arenaSize || outCount + k > st.outCapacity {
                sendOut(outCount)
                outCount = 0
                arenaUsed = 0
            }
            let base = st.arena + arenaUsed
            if !inPlace {
                Offload.split(p, plan: plan, segments: s..<(s + k), into: base + room, stride: stride, partialChecksums: partial)
            }
            var run = -1
            var runEndpoint = Endpoint(family: .v4, address: IPAddressBytes(), port: 0)
            for j in 0..<k {
                let slot = base + j * stride
                let buf = UnsafeMutableRawBufferPointer(start: slot, count: stride)
                var source: UnsafeRawPointer?
                if let segmentBase {
                    source = UnsafeRawPointer(Offload.cutInPlace(p, plan: plan, segment: s + j, headers: st.headers,
                                                                 base: segmentBase, partialChecksums: partial))
                }
                guard let (ep, offset, length) = seal(id, buf, payloadOffset: room, payloadLength: plan.length(ofSegment: s + j),
                                                      flags: flags, source: source, now: now, forCore: forCore) else {
                    run = -1
                    continue
                }
                let d = (slot + offset).assumingMemoryBound(to: UInt8.self)
                if run >= 0, ep == runEndpoint, st.out[run].data + Int(st.out[run].len) == d,
                   Int(st.out[run].len) % Int(st.out[run].segment) == 0, length <= Int(st.out[run].segment) {
                    st.out[run].len += UInt32(length)
                } else {
                    st.out[outCount] = DatagramView()
                    st.out[outCount].data = d
                    st.out[outCount].len = UInt32(length)
                    st.out[outCount].segment = UInt16(truncatingIfNeeded: length)
                    st.out[outCount].peer = ep.socketAddress
                    run = outCount
                    runEndpoint = ep
                    outCount += 1
                }
            }
            arenaUsed += k * stride
            s += k
        }
    }

    /// Seals one packet for `peer` in place under the shard's keys; what the shard
    /// hands back (no keys or path here), and `forCore` packets on lane 0, NodeCore
    /// seals or queues. Nil when it was queued, handed to lane 0, or dropped (counted).
    /// `flags`: `checksumPartial` when the packet's checksum was left partial for the
    /// shard's keys; completed here if NodeCore takes it after all (it never sends flags).
    /// `source`: the packet lies there, not in `buf` (a segment cut in place): sealed from
    /// there, or copied into `buf` first when NodeCore takes it.
    @inline(__always)
    private func seal(_ peer: PeerID, _ buf: UnsafeMutableRawBufferPointer, payloadOffset: Int, payloadLength: Int,
                      flags: UInt8, source: UnsafeRawPointer?, now: Instant, forCore: Bool) -> (Endpoint, Int, Int)? {
        if !forCore {
            switch shard.send(to: peer, buf, payloadOffset: payloadOffset, payloadLength: payloadLength, flags: flags,
                              source: source, now: now) {
            case .send(let ep, let offset, let length):
                return (ep, offset, length)
            case .drop(.session(let reason)):
                count(reason.sendCounter)
                return nil
            case .drop(let reason):
                count("send_" + reason.name)  // bad geometry: a bug, not traffic
                return nil
            case .core:
                if let source { (buf.baseAddress! + payloadOffset).copyMemory(from: source, byteCount: payloadLength) }
                if flags != 0 { completePartialChecksum(buf.baseAddress! + payloadOffset, length: payloadLength) }
                if id != 0 {
                    handoff(to: 0, Handoff(kind: .tunCore, peer: Int32(peer.rawValue)), buf.baseAddress! + payloadOffset,
                            length: payloadLength)
                    return nil
                }
            }
        }
        touchedCore = true
        switch daemon.core.sendPacket(to: peer, buf, payloadOffset: payloadOffset, payloadLength: payloadLength, now: now) {
        case .send(let ep, let offset, let length):
            return (ep, offset, length)
        case .queued:
            return nil
        case .drop(let reason):
            count(reason.sendCounter)
            return nil
        }
    }

    /// Completes the transport checksum of a packet that was left partial for the shard's keys.
    private func completePartialChecksum(_ p: UnsafeMutableRawPointer, length: Int) {
        guard let place = Offload.checksumPlace(p, length: length) else { return }
        _ = Offload.completeChecksum(p, length: length, header: .partialChecksum(start: place.start, offset: place.offset))
    }

    /// Sends views 0..<n of the outgoing batch; what the socket could not take is counted.
    private func sendOut(_ n: Int) {
        guard n > 0 else { return }
        let out = fast.out
        let sent = udp.send(DatagramBatch(base: out, count: n))
        if sent < n { countUnsent(out, sent..<n) }
    }

    private func flushForwards() {
        guard forwards > 0 else { return }
        let sent = udp.send(DatagramBatch(base: out, count: forwards))
        if sent < forwards { countUnsent(out, sent..<forwards) }
        forwards = 0
    }

    /// Counts the datagrams of views the socket did not take (a GSO run counts each of its datagrams).
    func countUnsent(_ views: UnsafeMutablePointer<DatagramView>, _ range: Range<Int>) {
        var lost: UInt64 = 0
        for v in range {
            let seg = Int(views[v].segment)
            lost += seg > 0 ? UInt64((Int(views[v].len) + seg - 1) / seg) : 1
        }
        drops["udp_send_full", default: 0] &+= lost
    }

    // MARK: UDP → TUN

    func udpReceived(_ batch: DatagramBatch) {
        let now = Daemon.now()
        beginBatch()
        for i in 0..<batch.count {
            let d = batch[i]
            let total = Int(d.pointee.len)
            let seg = Int(d.pointee.segment)
            // A GRO run is `segment`-byte datagrams back to back (the last may be shorter).
            let step = seg > 0 && seg < total ? seg : max(total, 1)
            let from = Endpoint(d.pointee.peer)
            var off = 0
            receivingView = i
            repeat {
                let length = min(step, total - off)
                let buf = UnsafeMutableRawBufferPointer(start: d.pointee.data + off, count: Int(d.pointee.cap) - off)
                off += step
                udpDatagram(buf, length: length, from: from, now: now, handedOver: false)
            } while off < total
        }
        receivingView = -1
        endBatch(now: now)
    }

    /// One datagram: opened here when this lane owns its session, else handed on
    /// (once: a datagram another lane handed us is never handed on again).
    func udpDatagram(_ buf: UnsafeMutableRawBufferPointer, length: Int, from: Endpoint, now: Instant, handedOver: Bool) {
        // The rules are LaneRouter's (Protocol/Lanes/LaneRouter.swift), which the simulator runs too.
        let result = shard.receive(buf, length: length, from: from, now: now)
        switch router.afterShard(result, handedOver: handedOver) {
        case .deliver(let peer, let offset, let len):
            // In counter order when the peer spreads over several paths (Reorder.swift).
            deliverOpened(buf.baseAddress! + offset, length: len, from: peer, now: now)
        case .transmit(let ep, let offset, let len):
            // An anchor's RELAY, forwarded by this lane's shard (every lane forwards).
            queueForward(buf.baseAddress! + offset, length: len, to: ep)
        case .control(let peer, let offset, let len, let via):
            markOpened(peer, now: now)
            if id == 0 {
                daemon.core.receiveOpened(from: peer, payload: UnsafeRawBufferPointer(rebasing: buf[offset..<(offset + len)]),
                                          source: from, via: via, now: now).countDrop(in: self)
                touchedCore = true
            } else {
                handoff(to: 0, Handoff(kind: .control, peer: Int32(peer.rawValue), via: Int32(via?.rawValue ?? -1), source: from),
                        buf.baseAddress! + offset, length: len)
            }
        case .core:
            switch router.toCore(at: id, handedOver: handedOver) {
            case .core: coreDatagram(buf, length: length, from: from, now: now, handedOver: handedOver)
            case .handTo(let k): handoff(to: k, Handoff(kind: .datagram, source: from), buf.baseAddress!, length: length)
            default: count("handoff_loop")
            }
        case .handTo(let k):
            handoff(to: k, Handoff(kind: .datagram, source: from), buf.baseAddress!, length: length)
            count("handoff_datagrams")
        case .loop:
            count("handoff_loop")
        case .done:
            // Consumed (a keepalive: its counter fills its place), or dropped and counted by the shard.
            if case .consumed = result, !reorder.buffering.isEmpty { markOpened(shard.lastOpened.peer, now: now) }
        }
    }

    /// A datagram for NodeCore (lane 0): handshakes, probes, relay.
    private func coreDatagram(_ buf: UnsafeMutableRawBufferPointer, length: Int, from: Endpoint, now: Instant, handedOver: Bool) {
        touchedCore = true
        // Handshake load is metered inside the session layer (Tunnels), after
        // the length and mac1 checks, for direct and relayed handshakes alike.
        switch daemon.core.receive(buf, length: length, from: from, now: now) {
        case .packet(let peer, let offset, let len):
            guard len > 0 else { return }  // keepalive
            let p = buf.baseAddress! + offset
            deliver(p, length: len, from: peer, partial: DataMessage.flags(ofPayloadAt: p) & DataMessage.checksumPartial != 0)
        case .transmit(let ep, let offset, let len):
            // A probe answered (or, unsharded, a RELAY forwarded): sent from where it lies, in this batch.
            queueForward(buf.baseAddress! + offset, length: len, to: ep)
        case .consumed:
            break
        case .drop:
            break  // counted by NodeCore itself (NodeCore.drop), which the status reports: not again here
        case .handoff(let k):
            // Session data: its owner opens it (this lane's shard when it is the owner).
            switch router.afterCoreHandoff(to: k, at: id, handedOver: handedOver) {
            case .handTo(let k): handoff(to: k, Handoff(kind: .datagram, source: from), buf.baseAddress!, length: length)
            case .loop: count("handoff_loop")
            default: udpDatagram(buf, length: length, from: from, now: now, handedOver: true)
            }
        }
    }

    /// Queues `length` bytes at `p` (in the receive slab) for `ep`, sent at the end of the batch.
    /// A GRO run relayed to one member stays one run: its datagrams lie back to back,
    /// so the run goes out as one UDP GSO send, as it came in.
    @inline(__always)
    private func queueForward(_ p: UnsafeMutableRawPointer, length len: Int, to ep: Endpoint) {
        let data = p.assumingMemoryBound(to: UInt8.self)
        if forwards > 0, Daemon.extendRun(out + (forwards - 1), data: data, length: len, to: ep) { return }
        if forwards == Daemon.batch { flushForwards() }
        out[forwards] = DatagramView()
        out[forwards].data = data
        out[forwards].len = UInt32(len)
        out[forwards].segment = UInt16(truncatingIfNeeded: len)
        out[forwards].peer = ep.socketAddress
        forwards += 1
    }

    /// An opened IP packet from `peer`: checked against its addresses, then to the TUN (coalesced).
    /// `partial`: its sender left the transport checksum to us (DATA flag `checksumPartial`,
    /// authenticated): written with NEEDS_CSUM, never verified here.
    func deliver(_ p: UnsafeMutableRawPointer, length: Int, from peer: PeerID, partial: Bool) {
        guard let (src, fam) = IPHeader.source(p, length: length) else {
            count("inner_not_ip")
            return
        }
        // Cryptokey routing, inbound: the inner source must be one of this member's addresses.
        guard daemon.routes.allows(peer: peer.rawValue, source: src, family: fam) else {
            count("inner_source_not_allowed")
            return
        }
        var place: (start: Int, offset: Int)?
        if partial {
            // The sender flags only packets that say where their checksum lies; and only a TUN
            // with a vnet header takes NEEDS_CSUM (without one, no session negotiates the flag).
            guard tun.vnetHeader, let at = Offload.checksumPlace(p, length: length) else {
                count("inner_partial_checksum_unplaced")
                return
            }
            place = at
        }
        if tun.vnetHeader, fast.coalescing {
            let coalescer = fast.coalescer
            if !coalescer.add(p, length: length, partial: place) {
                writeCoalesced(coalescer)
                coalescer.add(p, length: length, partial: place)
            }
        } else if let place {
            if !tun.write(p, length: length, header: .partialChecksum(start: place.start, offset: place.offset)) { count("tun_write") }
        } else if !tun.write(p, length: length) {
            count("tun_write")
        }
    }

    /// One TUN write per packet or super-packet the coalescer holds, in order.
    func writeCoalesced(_ coalescer: GSOCoalescer) {
        let st = fast
        let tun = self.tun!
        coalescer.flush { o in
            guard !o.pieces.isEmpty else {
                let written = o.header.needsChecksumCompletion
                    ? tun.write(o.head, length: o.headLength, header: o.header)
                    : tun.write(o.head, length: o.headLength)
                if !written { count("tun_write") }
                return
            }
            o.header.write(to: st.vnet)
            st.iov[0] = IOVector(base: st.vnet, len: VirtioNetHeader.size)
            st.iov[1] = IOVector(base: o.head, len: o.headLength)
            for (j, piece) in o.pieces.enumerated() {
                st.iov[2 + j] = IOVector(base: UnsafeMutableRawPointer(mutating: piece.base), len: piece.length)
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
                    daemon.logger.notice("tun: UDP GSO write refused (EINVAL); writing UDP one datagram at a time from now on")
                }
            } else if st.coalescing {
                st.coalescing = false
                daemon.logger.notice("tun: GSO write refused (EINVAL); writing one packet per segment from now on")
            }
            GSOCoalescer.restoreHead(o)
            if !tun.write(o.head, length: o.headLength) { count("tun_write") }
            let hl = Int(o.header.headerLength)
            for piece in o.pieces {
                let seg = UnsafeMutableRawPointer(mutating: piece.base - hl)
                GSOCoalescer.restoreSegment(seg, length: piece.length + hl, of: o)  // a partial checksum, completed
                if !tun.write(seg, length: piece.length + hl) { count("tun_write") }
            }
        }
    }
}

extension Daemon {
    /// Appends a datagram to the GSO run in `v` when it can be one more of its
    /// segments: the same destination, right behind it in memory, no longer
    /// than the run's segment size, and the run neither closed by a shorter
    /// datagram nor full.
    static func extendRun(_ v: UnsafeMutablePointer<DatagramView>, data: UnsafeMutablePointer<UInt8>, length: Int,
                           to ep: Endpoint) -> Bool {
        let seg = Int(v.pointee.segment)
        let len = Int(v.pointee.len)
        guard seg > 0, len % seg == 0, length <= seg, v.pointee.data + len == data,
              len / seg < DatagramSocket.maxGSOSegments, len + length <= DatagramSocket.maxGSOBytes else { return false }
        guard Endpoint(v.pointee.peer) == ep else { return false }
        v.pointee.len += UInt32(length)
        return true
    }
}
