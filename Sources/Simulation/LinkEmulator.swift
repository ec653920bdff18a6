// One direction of an emulated link, as a sans-IO machine: what netem would do
// if this kernel had it. `ws-bench linkemu` drives two of these (one per
// direction) between two TUN devices; the multipath simulation drives them with
// a virtual clock. Nothing here reads a clock or touches a descriptor.
//
//   send(h, length, now) ─▶ up? ─▶ loss (seeded RNG) ─▶ drop-tail queue ─▶ serializer (rate)
//                                                                          │ departs at `departAt`
//                        pollOutput(now) ◀── delay line (delay ± jitter, FIFO) ◀┘
//
// - Rate: a packet occupies the serializer for length·8/rate seconds after the
//   one before it (the IP packet's bytes; no L2 framing is added). rate 0 =
//   unlimited (departs at once).
// - Queue: packets waiting for the serializer. Drop-tail, bounded either in
//   packets or in time (the serializer backlog, which for a fixed rate is bytes).
// - Delay: departure + delay + a uniform jitter sample in [-jitter, +jitter],
//   but never before the packet ahead of it: a path does not reorder (netem
//   does the same when a rate is set). Jitter therefore shows as delay variation.
// - Loss: random, independent per packet, at entry (before the queue).
// - Down: every packet sent is dropped, and what is queued or in flight is
//   dropped at once (a cut cable). Up again: new packets pass.
//
// Packets are opaque handles (the driver's pool buffers); every handle given to
// `send` comes back exactly once: refused at once (the return value), or from
// `pollOutput` as `.deliver` or `.drop`. Storage is one ring allocated at init
// (`capacity` packets in flight at most); nothing is allocated per packet.
import Support
import Protocol

public struct LinkSettings: Sendable, Equatable, CustomStringConvertible {
    public enum QueueLimit: Sendable, Equatable {
        case packets(Int)
        case time(Span)
    }
    /// One-way delay added to every packet.
    public var delay: Span = .zero
    /// Uniform jitter: each packet's delay is in delay ± jitter (no reordering).
    public var jitter: Span = .zero
    /// Bits per second the serializer sends at; 0 = unlimited.
    public var rate: UInt64 = 0
    /// Drop-tail bound of the queue in front of the serializer.
    public var queue: QueueLimit = .packets(1000)
    /// Probability 0...1 that a packet is lost.
    public var loss: Double = 0
    /// False: the link is cut.
    public var up: Bool = true

    @inlinable public init(delay: Span = .zero, jitter: Span = .zero, rate: UInt64 = 0,
                queue: QueueLimit = .packets(1000), loss: Double = 0, up: Bool = true) {
        self.delay = delay
        self.jitter = jitter
        self.rate = rate
        self.queue = queue
        self.loss = loss
        self.up = up
    }

    public var description: String {
        var s = "delay=\(Self.ms(delay)),jitter=\(Self.ms(jitter)),rate=\(rate == 0 ? "0" : "\(Double(rate) / 1e6)mbit")"
        switch queue {
        case .packets(let n): s += ",queue=\(n)p"
        case .time(let t): s += ",queue=\(Self.ms(t))"
        }
        s += ",loss=\(loss)"
        if !up { s += ",down" }
        return s
    }

    static func ms(_ s: Span) -> String {
        s.ns % 1_000_000 == 0 ? "\(s.ns / 1_000_000)ms" : "\(Double(s.ns) / 1e6)ms"
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case badField(String)
        case badValue(String, String)
        public var description: String {
            switch self {
            case .badField(let f): return "unknown link setting '\(f)' (delay, jitter, rate, queue, loss, up, down)"
            case .badValue(let f, let v): return "bad value '\(v)' for \(f)"
            }
        }
    }

    /// Parses "delay=20ms,jitter=2ms,rate=50mbit,queue=100ms,loss=0.01" (any subset, any
    /// order) on top of `base`. Units: delay/jitter in us|ms|s; rate in bit|kbit|mbit|gbit
    /// (decimal); queue in p (packets) or a time; loss a fraction 0...1 or a percentage "1%".
    public static func parse(_ text: String, base: LinkSettings = LinkSettings()) throws(ParseError) -> LinkSettings {
        var s = base
        for part in text.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { String($0).trimmingSpaces }
            let key = kv[0].lowercased()
            let value = kv.count > 1 ? kv[1].lowercased() : ""
            switch key {
            case "delay":
                guard let t = parseTime(value) else { throw .badValue(key, value) }
                s.delay = t
            case "jitter":
                guard let t = parseTime(value) else { throw .badValue(key, value) }
                s.jitter = t
            case "rate":
                guard let r = parseRate(value) else { throw .badValue(key, value) }
                s.rate = r
            case "queue":
                if value.hasSuffix("p"), let n = Int(value.dropLast()), n > 0 {
                    s.queue = .packets(n)
                } else if let t = parseTime(value), t.ns > 0 {
                    s.queue = .time(t)
                } else {
                    throw .badValue(key, value)
                }
            case "loss":
                let pct = value.hasSuffix("%")
                guard let x = Double(pct ? String(value.dropLast()) : value) else { throw .badValue(key, value) }
                let p = pct ? x / 100 : x
                guard p >= 0 && p <= 1 else { throw .badValue(key, value) }
                s.loss = p
            case "up": s.up = true
            case "down": s.up = false
            case "": continue
            default: throw .badField(key)
            }
        }
        return s
    }

    static func parseTime(_ v: String) -> Span? {
        let units: [(String, Double)] = [("us", 1e3), ("ms", 1e6), ("s", 1e9)]
        for (u, k) in units where v.hasSuffix(u) {
            guard let x = Double(v.dropLast(u.count)), x >= 0, x < 3600 else { return nil }
            return Span(ns: UInt64(x * k))
        }
        if v == "0" { return .zero }
        return nil
    }

    static func parseRate(_ v: String) -> UInt64? {
        let units: [(String, Double)] = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1)]
        for (u, k) in units where v.hasSuffix(u) {
            guard let x = Double(v.dropLast(u.count)), x >= 0, x <= 1e3 * 1e9 / k else { return nil }
            return UInt64(x * k)
        }
        if v == "0" { return 0 }
        return nil
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

/// Counters of one direction (all packets, since start).
public struct LinkCounters: Sendable, Equatable {
    public var received = 0
    public var delivered = 0
    public var deliveredBytes = 0
    public var droppedLoss = 0
    public var droppedQueue = 0
    public var droppedDown = 0
    /// Refused because the ring was full (more in flight than `capacity`): raise it.
    public var droppedCapacity = 0
    /// Most packets waiting for the serializer at once.
    public var maxQueued = 0
    @inlinable public init() {}
}

public struct LinkEmulator<Handle>: Sendable where Handle: Sendable {
    public enum Output {
        case deliver(Handle, length: Int)
        /// Dropped after it was accepted (the link went down): release it.
        case drop(Handle)
    }

    @usableFromInline struct Entry: Sendable {
        @usableFromInline var handle: Handle
        @usableFromInline var length: Int
        @usableFromInline var departAt: Instant
        @usableFromInline var deliverAt: Instant
        @inlinable init(handle: Handle, length: Int, departAt: Instant, deliverAt: Instant) {
            self.handle = handle
            self.length = length
            self.departAt = departAt
            self.deliverAt = deliverAt
        }
    }

    public var settings: LinkSettings { _settings }

    @usableFromInline var _settings: LinkSettings
    public var counters: LinkCounters { _counters }
    @usableFromInline var _counters: LinkCounters = LinkCounters()
    public let capacity: Int
    @usableFromInline var ring: [Entry?]
    @usableFromInline var head = 0
    @usableFromInline var count = 0
    /// Entries [head, head+cutCount) were cut (link down): pollOutput drops them at once.
    @usableFromInline var cutCount = 0
    /// Entries after the cut ones known to have left the serializer (see `queued`).
    @usableFromInline var departed = 0
    @usableFromInline var serializerBusyUntil = Instant.zero
    @usableFromInline var lastDeliverAt = Instant.zero
    @usableFromInline var rng: SessionRandom

    @inlinable public init(settings: LinkSettings, capacity: Int = 1 << 16, seed: UInt64) {
        precondition(capacity > 0)
        _settings = settings
        self.capacity = capacity
        ring = Array(repeating: nil, count: capacity)
        rng = SessionRandom(seed: seed ^ 0x6C69_6E6B_656D_75)
    }

    @inlinable public var inFlight: Int { count }

    /// Packets accepted but not yet through the serializer at `now` (amortised O(1):
    /// departure times are non-decreasing along the ring, so a cursor walks them once).
    @inlinable public mutating func queued(now: Instant) -> Int {
        while cutCount + departed < count, let e = ring[(head + cutCount + departed) % capacity], e.departAt <= now {
            departed += 1
        }
        return count - cutCount - departed
    }

    /// Changes the settings; a change to down cuts what is queued and in flight.
    @inlinable public mutating func update(_ s: LinkSettings, now: Instant) {
        let wasUp = settings.up
        _settings = s
        if wasUp && !s.up {
            cutCount = count
            departed = 0
            serializerBusyUntil = now
            lastDeliverAt = now
        }
    }

    @inlinable public mutating func setUp(_ up: Bool, now: Instant) {
        var s = settings
        s.up = up
        update(s, now: now)
    }

    /// Offers one packet at `now`. Returns the handle back when it is refused at once
    /// (down, lost, queue full, ring full: counted); nil when the link took it.
    @inlinable public mutating func send(_ h: Handle, length: Int, now: Instant) -> Handle? {
        _counters.received += 1
        guard settings.up else {
            _counters.droppedDown += 1
            return h
        }
        if settings.loss > 0, Double(rng.next() >> 11) / Double(1 << 53) < settings.loss {
            _counters.droppedLoss += 1
            return h
        }
        guard count < capacity else {
            _counters.droppedCapacity += 1
            return h
        }
        let start = max(serializerBusyUntil, now)
        var departAt = now
        if settings.rate > 0 {
            let backlog = start - now
            let waiting = queued(now: now)
            switch settings.queue {
            case .packets(let n):
                if waiting >= n {
                    _counters.droppedQueue += 1
                    return h
                }
            case .time(let t):
                if backlog > t {
                    _counters.droppedQueue += 1
                    return h
                }
            }
            _counters.maxQueued = max(counters.maxQueued, waiting + 1)
            let tx = UInt64(length) &* 8 &* 1_000_000_000 / settings.rate
            departAt = start + Span(ns: tx)
            serializerBusyUntil = departAt
        }
        var d = settings.delay.ns
        let j = settings.jitter.ns
        if j > 0 {
            let r = rng.next() % (2 * j + 1)
            d = d + r >= j ? d + r - j : 0
        }
        let deliverAt = max(departAt + Span(ns: d), lastDeliverAt)
        lastDeliverAt = deliverAt
        ring[(head + count) % capacity] = Entry(handle: h, length: length, departAt: departAt, deliverAt: deliverAt)
        count += 1
        return nil
    }

    /// The next packet due at `now` (or cut), oldest first; nil when none is due.
    @inlinable public mutating func pollOutput(now: Instant) -> Output? {
        guard count > 0, let e = ring[head] else { return nil }
        if cutCount > 0 {
            cutCount -= 1
            pop()
            _counters.droppedDown += 1
            return .drop(e.handle)
        }
        guard e.deliverAt <= now else { return nil }
        pop()
        if departed > 0 { departed -= 1 }
        _counters.delivered += 1
        _counters.deliveredBytes += e.length
        return .deliver(e.handle, length: e.length)
    }

    @inlinable mutating func pop() {
        ring[head] = nil
        head = (head + 1) % capacity
        count -= 1
    }

    /// When `pollOutput` will next have something (nil: nothing in flight).
    @inlinable public func pollTimeout() -> Instant? {
        guard count > 0, let e = ring[head] else { return nil }
        return cutCount > 0 ? .zero : e.deliverAt
    }
}
