// The paths a session's owner spreads DATA over (docs/multipath.md, "Wired").
//
//   NodeCore.dataRoute(for:) ── DataRoute(endpoint, relayFor, spread) ──▶ SessionShard.setRoute
//     spread.count == 0   one usable path: the owner sends as before (no scheduler)
//     spread.count >= 2   the usable paths that answer (validated or heard, with an RTT
//                         from PATH_PING/PONG): the owner's MultipathScheduler picks per packet
//
// A value type of fixed size (no array): `ShardSync` compares and copies a route
// per peer on every sync, and that must not allocate.
import Support
import Wire

/// One path of a spread route: where a packet on it goes, and what its probes said.
public struct SpreadPath: Equatable, Sendable {
    /// The path's index in the member's PathSet (stable while the path exists): the
    /// scheduler's path index on the sender.
    public var slot: UInt8
    /// Where datagrams on it go (an anchor's address for a relay path).
    public var endpoint: Endpoint
    /// The member's RELAY label when the path goes through an anchor.
    public var relayFor: MemberID?
    /// Probe state (PathState: PATH_PING/PONG RTTs): smoothed RTT, its variation, the smallest.
    public var srtt: Span
    public var rttvar: Span
    public var minRTT: Span
    /// The last sample as it came and the number of samples so far (a new sample shows
    /// as a change, so the route is pushed again): a far path's queue, sample by sample.
    public var lastRTT: Span
    public var samples: UInt32
    public init(slot: UInt8, endpoint: Endpoint, relayFor: MemberID?, srtt: Span, rttvar: Span, minRTT: Span,
                lastRTT: Span? = nil, samples: UInt32 = 0) {
        self.slot = slot
        self.endpoint = endpoint
        self.relayFor = relayFor
        self.srtt = srtt
        self.rttvar = rttvar
        self.minRTT = minRTT
        self.lastRTT = lastRTT ?? srtt
        self.samples = samples
    }
}

/// Up to `capacity` paths, inline.
public struct SpreadRoute: Equatable, Sendable {
    public static let capacity = 4
    public private(set) var count = 0
    private var p0, p1, p2, p3: SpreadPath?

    public init() {}

    public subscript(i: Int) -> SpreadPath {
        switch i {
        case 0: p0!
        case 1: p1!
        case 2: p2!
        default: p3!
        }
    }

    /// Adds a path; false when full.
    @discardableResult
    public mutating func append(_ p: SpreadPath) -> Bool {
        switch count {
        case 0: p0 = p
        case 1: p1 = p
        case 2: p2 = p
        case 3: p3 = p
        default: return false
        }
        count += 1
        return true
    }

    /// Whether any path goes through an anchor (the owner then reserves RELAY header room).
    public var anyRelayed: Bool {
        var i = 0
        while i < count {
            if self[i].relayFor != nil { return true }
            i += 1
        }
        return false
    }

    /// Whether the path in PathSet slot `slot` is one of these.
    public func contains(slot: Int) -> Bool {
        var i = 0
        while i < count {
            if Int(self[i].slot) == slot { return true }
            i += 1
        }
        return false
    }

    /// The position of the path whose datagrams arrive from `source` (through the anchor there when relayed).
    @inline(__always)
    public func position(of source: Endpoint, relayed: Bool) -> Int? {
        var i = 0
        while i < count {
            let p = self[i]
            if p.endpoint == source && (p.relayFor != nil) == relayed { return i }
            i += 1
        }
        return nil
    }
}
