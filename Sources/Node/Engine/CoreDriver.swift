// Lane 0 drives NodeCore (the control plane): after each batch or timer it
// drains NodeCore's outputs in the documented order (Protocol/NodeCore.swift):
// transmits to the UDP socket, then keys, routes and anchors to the
// lanes that own the sessions, then events to the log, and last the next
// deadline to the one reactor timer.
import Support
import Wire
import Crypto
import Protocol
import Config
import Control
import Reactor
import Logging

extension Daemon {
    // MARK: Outputs and timers

    /// Drains the state machines' outputs: transmits, events, and the next deadline.
    func service(now: Instant) {
        var n = 0
        var used = 0
        while let t = core.pollTransmit() {
            if logger.logLevel <= .trace { logger.trace("transmit \(t.bytes.count) bytes type \(t.bytes.first ?? 0) to \(t.to)") }
            if t.bytes.count > Self.scratchSize - used || n == Self.batch {
                flush(n)
                n = 0
                used = 0
            }
            guard t.bytes.count <= Self.scratchSize else { continue }
            let dst = scratch + used
            t.bytes.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            out[n] = DatagramView()
            out[n].data = dst.assumingMemoryBound(to: UInt8.self)
            out[n].len = UInt32(t.bytes.count)
            out[n].peer = t.to.socketAddress
            n += 1
            used += (t.bytes.count + 15) & ~15
        }
        flush(n)
        // The owners (with one reactor: lane 0's shard) learn new keys and paths before the next batch.
        syncShards()
        while let e = core.pollEvent() { log(e) }
        if mtuControl.pending { recomputeMTU(now: now) }  // a path was added or removed (MTUControl.swift)
        armTimer()
    }

    func flush(_ n: Int) {
        guard n > 0 else { return }
        let sent = udp.send(DatagramBatch(base: out, count: n))
        if sent < n { lanes[0].countUnsent(out, sent..<n) }  // lane 0 counts what its socket refused
    }

    /// Arms the one reactor timer for the state machines' next deadline. A
    /// timer already armed for an earlier moment is kept: it fires early, finds
    /// nothing due, and arms the next one then. So while traffic moves the
    /// deadlines later with every batch, nothing is re-armed (and nothing allocated).
    func armTimer() {
        guard let (deadline, _) = core.pollTimeout() else {
            if let t = tunnelTimer { reactor.cancelTimer(t) }
            tunnelTimer = nil
            tunnelDeadline = nil
            return
        }
        if let armed = tunnelDeadline, armed <= deadline { return }
        if let t = tunnelTimer { reactor.cancelTimer(t) }
        tunnelDeadline = deadline
        tunnelTimer = reactor.addTimer(at: deadline.ns, tunnelTimerFired)
    }

    func log(_ e: NodeEvent) {
        switch e {
        case .session(.established(let p)): logger.info("\(peerName(p)): session established")
        case .session(.rekeyed(let p)): logger.debug("\(peerName(p)): rekeyed")
        case .session(.endpointChanged(let p, let ep)):
            if let more = moveLine() { logger.info("\(peerName(p)): endpoint now \(ep)\(more)") }
        case .session(.handshakeFailed(let p)): logger.notice("\(peerName(p)): no handshake answer; queued packets dropped")
        case .session(.expired(let p)): logger.notice("\(peerName(p)): keys expired")
        case .pathChanged(let p, let kind, let remote, let via):
            mtuControl.pending = true
            guard let more = moveLine() else { break }
            logger.info("\(peerName(p)): path \(kind.rawValue) \(remote)\(via.map { " via " + peerName($0) } ?? "")\(more)")
        case .anchorReachable(let a): logger.info("anchor \(peerName(a)) reachable")
        case .anchorUnreachable(let a): logger.notice("anchor \(peerName(a)) unreachable")
        case .onlyOneAnchorReachable(let a):
            logger.warning("only one anchor is reachable\(a.map { " (" + peerName($0) + ")" } ?? ""): add or restore an anchor on another network")
        case .noAnchorReachable: logger.warning("no anchor is reachable")
        case .observedEndpointChanged(let a, let old, let new):
            logger.notice("our public endpoint changed: \(old) -> \(new) (seen by \(peerName(a)))")
        case .natMappingChanged(let m): logger.info("NAT mapping: \(m.rawValue)")
        case .recoveryStarted: logger.warning("every path lost: recovery mode (anchors first, then cached endpoints, backoff up to 60 s)")
        case .recovered: logger.info("recovered")
        case .partitioned:
            logger.error("partitioned: every anchor and cached endpoint failed; this node needs a manual re-bootstrap (a reachable anchor endpoint in the config)")
        case .endpointCacheChanged: endpointCacheChanged(now: Self.now())
        case .gossipRecordsChanged: gossipRecordsChanged(now: Self.now())
        case .echoReply(let r): echoReplied(r)
        }
    }

    /// Whether a path or endpoint change line may be written now (`LogBudget`): nil
    /// if not; else a note of the lines left out before it ("" if none).
    private func moveLine() -> String? {
        let (allowed, leftOut) = moveLogBudget.admit(now: Self.now())
        guard allowed else { return nil }
        return leftOut == 0 ? "" : " (\(leftOut) path/endpoint change lines left out: over 2/s)"
    }

    /// After NodeCore ran: new keys, routes and anchors to the lanes
    /// that own the peers. What a full mailbox refused is sent again next time
    /// (a lane without a peer's keys would drop its DATA).
    /// The rules are `ShardSync`'s (Protocol/Lanes/LaneRouter.swift), which the simulator runs too.
    func syncShards() {
        shardSync.sync(&core) { k, push in
            let lane = lanes[k]
            if k == 0 {
                lane.shard.apply(push)
                return true
            }
            return lanes[0].mailboxTo[k]!.post { lane.shard.apply(push) }
        }
    }

    /// The endpoint cache changed: hand a snapshot to the writer now, or once the
    /// schedule allows (one reactor timer, armed once per interval).
    func endpointCacheChanged(now: Instant) {
        guard let writer = stateWriter else { return }
        switch saveSchedule.changed(now: now) {
        case .writeNow:
            writer.submit(core.endpointCacheBytes())
        case .writeAt(let at):
            _ = reactor.addTimer(at: at.ns) { [unowned self] in
                self.saveSchedule.fired(now: Self.now())
                writer.submit(self.core.endpointCacheBytes())
            }
        case .alreadyScheduled:
            break
        }
    }

    /// The gossip records changed: the same, for `records.bin`.
    func gossipRecordsChanged(now: Instant) {
        guard let writer = recordsWriter else { return }
        switch recordsSchedule.changed(now: now) {
        case .writeNow:
            writer.submit(core.gossipSnapshot())
        case .writeAt(let at):
            _ = reactor.addTimer(at: at.ns) { [unowned self] in
                self.recordsSchedule.fired(now: Self.now())
                writer.submit(self.core.gossipSnapshot())
            }
        case .alreadyScheduled:
            break
        }
    }
}
