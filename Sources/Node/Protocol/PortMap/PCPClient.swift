// The PCP client (RFC 6887) for one mapping: our UDP listening port, made
// reachable from outside by the default gateway. Sans-IO: the driver (the
// engine's port-mapping worker, Engine/PortMapAdapter.swift) owns the socket to
// gateway:5351 and the clock.
//
// Drain order for the driver, after `start`, `handle`, `handleTimeout` or `stop`:
//   1. `pollTransmit()` until nil: send each datagram to the gateway;
//   2. `pollEvent()` until nil: mapped / lost / unavailable;
//   3. `pollTimeout()`: wake then and call `handleTimeout(now:)` (nil: nothing
//      to do until the driver calls something).
//
//   idle ──start──▶ requesting ──SUCCESS──▶ mapped ──½ lifetime──▶ renewing ──SUCCESS──▶ mapped
//                      │  no answer after maxAttempts,       │ no answer until expiry, error
//                      ▼  an error, a reserved external      ▼
//                  unavailable (the driver tries NAT-PMP, then UPnP) ◀── lost
//   any ──stop──▶ deleting (lifetime 0, sent deleteAttempts times at most) ──▶ stopped
//
// Bad answers (wrong size, another version, a foreign nonce, error codes, a
// reserved external address) never throw or trap: each is counted by name in
// `counters` and either ignored (not our answer) or ends the attempt.

import Support
import Wire

/// What a port-mapping client reports to its driver.
public enum PortMapEvent: Equatable, Sendable {
    /// The mapping exists: `external` reaches our port until `lifetime` passes (renewed before).
    case mapped(external: Endpoint, lifetime: Span)
    /// A mapping we announced is gone (expired unrenewed, refused at renewal, or deleted).
    case lost(external: Endpoint)
    /// This protocol gives us nothing here (no answer, an error, a useless address); why, for the log.
    case unavailable(reason: String)
}

/// Why the client wants to wake.
public enum PortMapTimerReason: String, Sendable {
    case retransmit, renew, expire, retry
}

/// The values that drive the port-mapping clients (PCP here; the engine uses the
/// same lifetimes and pacing for NAT-PMP and UPnP).
public struct PortMapTimings: Sendable {
    /// First retransmission timeout. RFC 6887 §8.1.1 says IRT = 3 s; we wait
    /// 250 ms, because a gateway answers from the LAN in a millisecond and
    /// start-up must not sit waiting for one that does not speak PCP.
    public var initialRetransmit: Span
    /// Requests sent (doubling the timeout each time, RFC 6887's RT = 2 × RTprev)
    /// before a first mapping is given up as unavailable: 250 + 500 + 1000 ms.
    public var maxAttempts: Int
    /// Requested lifetime, seconds. RFC 6886 recommends 7200 s for NAT-PMP; we
    /// ask the same of PCP and UPnP. Renewed at half of what was granted.
    public var requestedLifetime: UInt32
    /// A granted lifetime below this is renewed as if it were this long
    /// (a gateway granting 1 s must not make us send ten requests a second).
    public var minimumLifetime: UInt32
    /// Retransmission cap while renewing an existing mapping (RFC 6887 MRT = 1024 s;
    /// we stay well below the lifetime so a renewal is retried several times).
    public var maxRetransmit: Span
    /// Delete requests sent at shutdown before giving up (the daemon does not wait longer).
    public var deleteAttempts: Int

    public init(initialRetransmit: Span = .milliseconds(250), maxAttempts: Int = 3, requestedLifetime: UInt32 = 7200,
                minimumLifetime: UInt32 = 60, maxRetransmit: Span = .seconds(UInt64(30)), deleteAttempts: Int = 2) {
        self.initialRetransmit = initialRetransmit
        self.maxAttempts = maxAttempts
        self.requestedLifetime = requestedLifetime
        self.minimumLifetime = minimumLifetime
        self.maxRetransmit = maxRetransmit
        self.deleteAttempts = deleteAttempts
    }

    public static let `default` = PortMapTimings()
}

/// Pure checks shared by the three protocols.
public enum PortMapRules {
    /// May this external address be advertised? Not a private, shared,
    /// loopback, link-local, documentation, benchmarking, multicast or reserved
    /// one (what a double NAT or a confused gateway hands out): such a mapping
    /// reaches nobody outside. IPv6: global unicast (2000::/3) only.
    public static func isUsableExternal(_ e: Endpoint) -> Bool {
        guard e.port != 0 else { return false }
        if e.family == .v6 { return e.address[0] & 0xe0 == 0x20 }
        let a = e.address[0], b = e.address[1], c = e.address[2]
        switch a {
        case 0, 10, 127: return false
        case 100 where b & 0xc0 == 64: return false  // 100.64/10 shared (CGN)
        case 169 where b == 254: return false
        case 172 where b & 0xf0 == 16: return false
        case 192 where b == 168: return false
        case 192 where b == 0 && (c == 0 || c == 2): return false  // 192.0.0/24 IETF, 192.0.2/24 TEST-NET-1
        case 198 where b & 0xfe == 18: return false  // 198.18/15 benchmarking
        case 198 where b == 51 && c == 100: return false  // TEST-NET-2
        case 203 where b == 0 && c == 113: return false  // TEST-NET-3
        case 224...255: return false  // multicast, reserved, broadcast
        default: return true
        }
    }

    /// RFC 6887 §8.5: has the server lost its state since the previous answer?
    /// `previous` is (server epoch, our clock) at the last valid answer. A server
    /// epoch that went back more than a second, or that moved differently from
    /// our clock by more than 2 s plus 1/16 (clock drift allowance), means the
    /// gateway restarted and our mapping is gone (RFC 6886 §3.6 for NAT-PMP: same rule).
    public static func epochLost(previousServer: UInt32, previousClient: Instant, server: UInt32, now: Instant) -> Bool {
        if UInt64(server) + 1 < UInt64(previousServer) { return true }
        let serverDelta = Int64(server) - Int64(previousServer)
        let clientDelta = Int64((now - previousClient).ns / 1_000_000_000)
        if clientDelta + 2 < serverDelta - serverDelta / 16 { return true }
        if serverDelta + 2 < clientDelta - clientDelta / 16 { return true }
        return false
    }
}

public struct PCPClient: Sendable {
    /// A mapping the gateway granted.
    public struct Mapping: Equatable, Sendable {
        public var external: Endpoint
        public var lifetime: Span
        public var renewAt: Instant
        public var expiresAt: Instant
    }

    public enum State: Equatable, Sendable {
        case idle
        /// A MAP request is outstanding: `attempt` sent so far, next one at `nextAt`.
        /// `current` is the mapping being renewed (nil for the first request).
        case requesting(attempt: Int, timeout: Span, nextAt: Instant, current: Mapping?)
        case mapped(Mapping)
        /// Given up; the driver decides what next (another protocol, `start` again later).
        case unavailable
        case deleting(attempt: Int, nextAt: Instant)
        case stopped
    }

    public private(set) var state: State = .idle
    public let gateway: Endpoint
    /// Our address toward the gateway (the request's client address: §8.1 "MUST be the source address").
    public let client: Endpoint
    public let internalPort: UInt16
    public let nonce: [UInt8]
    public let timings: PortMapTimings
    /// Bad answers and errors by name (`pcp_bad_size`, `pcp_error_NOT_AUTHORIZED`, ...).
    public private(set) var counters: [String: UInt64] = [:]
    /// The last valid answer's (server epoch, our clock), for §8.5.
    private var lastEpoch: (server: UInt32, at: Instant)?
    private var outbox: [[UInt8]] = []
    private var events: [PortMapEvent] = []
    /// The external endpoint last reported `.mapped` (to report `.lost` for it).
    private var announced: Endpoint?

    /// `nonce`: 12 random bytes (the engine draws them from libsodium), kept for renewals and the delete.
    public init(gateway: Endpoint, client: Endpoint, internalPort: UInt16, nonce: [UInt8], timings: PortMapTimings = .default) {
        precondition(nonce.count == 12)
        self.gateway = gateway
        self.client = client
        self.internalPort = internalPort
        self.nonce = nonce
        self.timings = timings
    }

    // MARK: Commands

    /// Asks for the mapping (again, after `unavailable`).
    public mutating func start(now: Instant) {
        switch state {
        case .idle, .unavailable:
            send(lifetime: timings.requestedLifetime)
            state = .requesting(attempt: 1, timeout: timings.initialRetransmit, nextAt: now + timings.initialRetransmit, current: nil)
        default: return
        }
    }

    /// Shutdown: delete the mapping (lifetime 0) if one may exist; `stopped` once
    /// the gateway confirms or after `deleteAttempts`.
    public mutating func stop(now: Instant) {
        switch state {
        case .mapped, .requesting:
            count("pcp_delete")
            send(lifetime: 0)
            state = .deleting(attempt: 1, nextAt: now + timings.initialRetransmit)
            withdraw()
        case .deleting, .stopped: return
        case .idle, .unavailable:
            state = .stopped
        }
    }

    // MARK: Input

    /// One datagram from the gateway's port 5351.
    public mutating func handle(_ bytes: [UInt8], now: Instant) {
        let r: PCPMapResponse
        switch PCPMapResponse.parse(bytes) {
        case .failure(let e):
            count("pcp_bad_\(e)")
            return
        case .success(let v): r = v
        }
        // A payload must be ours: nonce, protocol and port (§11.3). A header-only error cannot be matched and is taken as-is.
        if let n = r.nonce, n != nonce || r.protocolNumber != PCP.protocolUDP || r.internalPort != internalPort {
            count("pcp_not_ours")
            return
        }
        switch state {
        case .requesting:
            accept(r, now: now)
        case .deleting:
            if r.resultCode == PCP.Result.success.rawValue || r.result != nil {
                state = .stopped
            }
        default:
            count("pcp_unexpected")
        }
    }

    public mutating func handleTimeout(now: Instant) {
        switch state {
        case .requesting(let attempt, let timeout, let nextAt, let current):
            guard now >= nextAt else { return }
            if let m = current, now >= m.expiresAt {
                count("pcp_expired")
                lose("the mapping expired: the gateway stopped answering renewals")
                return
            }
            if current == nil && attempt >= timings.maxAttempts {
                count("pcp_no_answer")
                state = .unavailable
                events.append(.unavailable(reason: "no PCP answer from \(gateway.addressText) after \(attempt) requests"))
                return
            }
            var next = timeout * 2
            if next > timings.maxRetransmit { next = timings.maxRetransmit }
            if let m = current, now + next > m.expiresAt { next = m.expiresAt - now }
            count("pcp_retransmit")
            send(lifetime: timings.requestedLifetime)
            state = .requesting(attempt: attempt + 1, timeout: next, nextAt: now + next, current: current)
        case .mapped(let m):
            guard now >= m.renewAt else { return }
            count("pcp_renew")
            send(lifetime: timings.requestedLifetime)
            state = .requesting(attempt: 1, timeout: timings.initialRetransmit, nextAt: now + timings.initialRetransmit, current: m)
        case .deleting(let attempt, let nextAt):
            guard now >= nextAt else { return }
            if attempt >= timings.deleteAttempts {
                state = .stopped
                return
            }
            send(lifetime: 0)
            state = .deleting(attempt: attempt + 1, nextAt: now + timings.initialRetransmit * 2)
        case .idle, .unavailable, .stopped:
            return
        }
    }

    // MARK: Output

    public mutating func pollTransmit() -> [UInt8]? { outbox.isEmpty ? nil : outbox.removeFirst() }
    public mutating func pollEvent() -> PortMapEvent? { events.isEmpty ? nil : events.removeFirst() }

    public func pollTimeout() -> (deadline: Instant, reason: PortMapTimerReason)? {
        switch state {
        case .requesting(_, _, let nextAt, let current):
            if let m = current, m.expiresAt < nextAt { return (m.expiresAt, .expire) }
            return (nextAt, .retransmit)
        case .mapped(let m): return (m.renewAt, .renew)
        case .deleting(_, let nextAt): return (nextAt, .retransmit)
        case .idle, .unavailable, .stopped: return nil
        }
    }

    /// The mapping in force, if any.
    public var mapping: Mapping? {
        switch state {
        case .mapped(let m): m
        case .requesting(_, _, _, let m): m
        default: nil
        }
    }

    // MARK: Internals

    private mutating func accept(_ r: PCPMapResponse, now: Instant) {
        guard r.resultCode == PCP.Result.success.rawValue else {
            let name = r.result?.description ?? "code_\(r.resultCode)"
            count("pcp_error_\(name)")
            lose("the gateway answered \(name)")
            return
        }
        guard r.nonce != nil, let ext = r.external, r.lifetime > 0 else {
            count("pcp_bad_success")
            return
        }
        guard PortMapRules.isUsableExternal(ext) else {
            count("pcp_bad_external")
            lose("the gateway mapped us to \(ext), an address nobody outside can reach")
            return
        }
        if let e = lastEpoch, PortMapRules.epochLost(previousServer: e.server, previousClient: e.at, server: r.epoch, now: now) {
            // §8.5: the gateway restarted. This answer is itself a fresh mapping (a
            // renewal is a full MAP request), so it stands; only its address may be new.
            count("pcp_gateway_restarted")
        }
        lastEpoch = (r.epoch, now)
        let lifetime = max(r.lifetime, timings.minimumLifetime)
        let m = Mapping(external: ext, lifetime: .seconds(UInt64(r.lifetime)),
                        renewAt: now + .seconds(UInt64(lifetime / 2)), expiresAt: now + .seconds(UInt64(r.lifetime)))
        state = .mapped(m)
        if announced != ext {
            if let old = announced { events.append(.lost(external: old)) }
            announced = ext
            events.append(.mapped(external: ext, lifetime: m.lifetime))
        }
    }

    private mutating func lose(_ reason: String) {
        withdraw()
        state = .unavailable
        events.append(.unavailable(reason: reason))
    }

    private mutating func withdraw() {
        if let old = announced { events.append(.lost(external: old)) }
        announced = nil
    }

    private mutating func send(lifetime: UInt32) {
        outbox.append(PCPMapRequest(lifetime: lifetime, client: client, nonce: nonce, internalPort: internalPort,
                                    suggestedExternal: Endpoint(family: client.family, address: IPAddressBytes(), port: internalPort)).serialize())
    }

    private mutating func count(_ name: String) { counters[name, default: 0] &+= 1 }
}
