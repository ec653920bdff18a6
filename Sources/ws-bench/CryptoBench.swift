// Crypto on one core: Noise_IK handshakes per second, and the data path's
// seal+open throughput as a ratio of libsodium's raw ChaCha20-Poly1305 on the
// same buffers in the same run. A benchmark, never a test (perf/crypto).
//
//   handshakes   full:      createInitiation -> consumeInitiation + createResponse -> consumeResponse
//                responder: consumeInitiation + createResponse   (what one flooded INIT costs an anchor)
//                mac1:      CookieChecker.mac1Valid               (the cheap gate in front of the DH work)
//
//   one packet, one buffer [ header 16 | payload n | tag 16 ], sealed then opened in place on this core:
//                raw:       crypto_aead_chacha20poly1305_ietf_{encrypt,decrypt}_detached on payload+tag
//                tunnel:    writeHeader, TransportKey.seal | parseHeader, ReplayWindow.check, TransportKey.open, accept
//                aesgcm:    the same with an AES-256-GCM TransportKey (precomputed state; only with AES-NI)
//                session:   Tunnels.send (A)               | Tunnels.receive (B): index table, keypair, replay, timers
//
// Time is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID): a build running
// beside the benchmark still slows it (caches, memory bandwidth) but does not
// stretch its clock. Variants that are compared (raw/tunnel/session of one size;
// the handshake rows) take turns in 10 ms slices, so drift hits them alike.
// Every slice is bracketed by two allocation readings: calls, from
// perf/lib/malloccount.so when perf/crypto preloads it (MallocCounter), and heap
// bytes in use, from glibc's mallinfo2() (growth only: it cannot see a malloc
// freed within the loop). `--probe` runs one loop untimed, for perf/crypto
// --count-mallocs (calls under ltrace) and --instructions (callgrind).
import ArgumentParser
import CSodium
import Foundation
import Glibc
import Engine
import Config
import Control
import Protocol
import Crypto
import Wire
import Support

struct CryptoBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crypto",
        abstract: "Noise_IK handshakes/s and tunnel seal+open throughput per core, as ratios to raw libsodium ChaCha20-Poly1305.")

    @Option(help: "Seconds of CPU time per measurement.") var seconds: Double = 1
    @Option(help: "Rounds; within one, the variants of a table block take turns in 10 ms slices. Tables show min/median/max.")
    var rounds: Int = 3
    @Option(help: "Payload sizes in bytes, comma-separated.") var sizes: String = "64,512,1280,1420"
    @Option(help: ArgumentHelp(
        "Run one loop untimed and exit: handshake, responder, mac1, raw:SIZE, tunnel:SIZE, aesgcm:SIZE (AES-NI only) or session:SIZE (for malloc counting).",
        valueName: "variant")) var probe: String?
    @Option(help: "Operations in a --probe loop.") var ops: Int = 1000

    func validate() throws {
        guard seconds > 0, rounds > 0, ops > 0 else { throw ValidationError("--seconds, --rounds and --ops must be positive") }
        guard !payloadSizes.isEmpty, payloadSizes.allSatisfy({ $0 >= 0 && $0 <= PacketBench.maxPayload }) else {
            throw ValidationError("--sizes: comma-separated payload sizes in 0...\(PacketBench.maxPayload)")
        }
    }

    var payloadSizes: [Int] { sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        var hs = try HandshakeBench()
        var pk = try PacketBench(sizes: payloadSizes)
        if let probe {
            try runProbe(probe, hs: &hs, pk: &pk)
            return
        }
        // Variants compared with each other share a group, and a group's variants
        // take turns in short slices, so drift on this shared machine (other
        // builds, frequency, a noisy neighbour) falls on all of them alike.
        let groups = [[Variant.handshake, .responder, .mac1]]
            + payloadSizes.map { [Variant.raw($0), .tunnel($0)] + (pk.hasAESGCM ? [.aesgcm($0)] : []) + [.session($0)] }
        let variants = groups.flatMap { $0 }
        // Warm up: caches, branch predictors, lazily initialized runtime metadata, CPU clock.
        for g in groups { _ = measureGroup(g, seconds: min(0.2, seconds / 5), hs: &hs, pk: &pk) }
        var samples: [Variant: [Sample]] = [:]
        for round in 0..<rounds {
            for g in groups {
                for (v, s) in zip(g, measureGroup(g, seconds: seconds, hs: &hs, pk: &pk)) {
                    samples[v, default: []].append(s)
                    log("round \(round + 1) \(v): \(Int(s.opsPerSecond)) ops/s, heap growth \(s.heapGrowth) B")
                }
            }
        }
        guard hs.failures == 0, pk.failures == 0, pk.payloadIntact() else {
            throw ValidationError("a handshake or packet failed (\(hs.failures) handshakes, \(pk.failures) packets): figures discarded")
        }
        report(samples, variants: variants)
    }

    // MARK: Measuring

    enum Variant: Hashable, CustomStringConvertible {
        case handshake, responder, mac1
        case raw(Int), tunnel(Int), aesgcm(Int), session(Int)

        var description: String {
            switch self {
            case .handshake: return "handshake"
            case .responder: return "responder"
            case .mac1: return "mac1"
            case .raw(let n): return "raw:\(n)"
            case .tunnel(let n): return "tunnel:\(n)"
            case .aesgcm(let n): return "aesgcm:\(n)"
            case .session(let n): return "session:\(n)"
            }
        }

        init?(_ text: String) {
            let parts = text.split(separator: ":")
            switch (parts.first, parts.count == 2 ? Int(parts[1]) : nil) {
            case ("handshake"?, nil) where parts.count == 1: self = .handshake
            case ("responder"?, nil) where parts.count == 1: self = .responder
            case ("mac1"?, nil) where parts.count == 1: self = .mac1
            case ("raw"?, let n?): self = .raw(n)
            case ("tunnel"?, let n?): self = .tunnel(n)
            case ("aesgcm"?, let n?): self = .aesgcm(n)
            case ("session"?, let n?): self = .session(n)
            default: return nil
            }
        }

        var payloadSize: Int? {
            switch self {
            case .handshake, .responder, .mac1: return nil
            case .raw(let n), .tunnel(let n), .aesgcm(let n), .session(let n): return n
            }
        }

        /// Operations between two clock reads: enough that reading the clock (a
        /// syscall, ~0.3 µs) is noise, few enough to end a slice on time.
        var batch: Int {
            switch self {
            case .handshake, .responder: return 1
            case .mac1, .raw, .tunnel, .aesgcm, .session: return 64
            }
        }
    }

    struct Sample {
        var ops = 0
        var cpuNanoseconds: UInt64 = 0
        /// Heap bytes in use (mallinfo2 uordblks + hblkhd) after minus before, summed over the slices.
        var heapGrowth = 0
        /// Bytes the allocator got from the system (mallinfo2 arena), the same way.
        var arenaGrowth = 0
        /// malloc-family calls in the process (nil without perf/lib/malloccount.so).
        var mallocs: UInt64? = 0
        var opsPerSecond: Double { Double(ops) * 1e9 / Double(cpuNanoseconds) }

        static func += (a: inout Sample, b: Sample) {
            a.ops += b.ops
            a.cpuNanoseconds += b.cpuNanoseconds
            a.heapGrowth += b.heapGrowth
            a.arenaGrowth += b.arenaGrowth
            a.mallocs = a.mallocs.flatMap { x in b.mallocs.map { x + $0 } }
        }
    }

    /// One slice of CPU time.
    static let slice: UInt64 = 10_000_000

    /// Runs the group's variants in turns of `slice` until each has had `seconds` of CPU time.
    func measureGroup(_ group: [Variant], seconds: Double, hs: inout HandshakeBench, pk: inout PacketBench) -> [Sample] {
        let budget = UInt64(seconds * 1e9)
        var acc = [Sample](repeating: Sample(), count: group.count)
        while acc.contains(where: { $0.cpuNanoseconds < budget }) {
            for (i, v) in group.enumerated() where acc[i].cpuNanoseconds < budget {
                acc[i] += measure(v, for: min(Self.slice, budget - acc[i].cpuNanoseconds), hs: &hs, pk: &pk)
            }
        }
        return acc
    }

    func measure(_ v: Variant, for ns: UInt64, hs: inout HandshakeBench, pk: inout PacketBench) -> Sample {
        switch v {
        case .handshake: return timed(ns, batch: v.batch) { hs.full($0) }
        case .responder: return timed(ns, batch: v.batch) { hs.responder($0) }
        case .mac1: return timed(ns, batch: v.batch) { hs.mac1($0) }
        case .raw(let n): return timed(ns, batch: v.batch) { pk.raw(size: n, count: $0) }
        case .tunnel(let n): return timed(ns, batch: v.batch) { pk.tunnel(size: n, count: $0) }
        case .aesgcm(let n): return timed(ns, batch: v.batch) { pk.tunnel(size: n, count: $0, aesGCM: true) }
        case .session(let n): return timed(ns, batch: v.batch) { pk.session(size: n, count: $0) }
        }
    }

    /// Runs `step(batch)` until `budget` ns of this thread's CPU time have passed.
    func timed(_ budget: UInt64, batch: Int, _ step: (Int) -> Void) -> Sample {
        let h0 = HeapStats.now()
        let m0 = MallocCounter.count
        let c0 = threadCPU()
        var ops = 0
        var elapsed: UInt64 = 0
        repeat {
            step(batch)
            ops += batch
            elapsed = threadCPU() - c0
        } while elapsed < budget
        let m1 = MallocCounter.count
        let h1 = HeapStats.now()
        return Sample(ops: ops, cpuNanoseconds: elapsed, heapGrowth: h1.inUse - h0.inUse, arenaGrowth: h1.arena - h0.arena,
                      mallocs: m0.flatMap { a in m1.map { $0 - a } })
    }

    func runProbe(_ text: String, hs: inout HandshakeBench, pk: inout PacketBench) throws {
        guard let v = Variant(text) else { throw ValidationError("--probe: unknown variant \(text)") }
        if let n = v.payloadSize, !pk.sizes.contains(n) { throw ValidationError("--probe \(text): \(n) is not in --sizes") }
        switch v {
        case .handshake: hs.full(ops)
        case .responder: hs.responder(ops)
        case .mac1: hs.mac1(ops)
        case .raw(let n): pk.raw(size: n, count: ops)
        case .tunnel(let n): pk.tunnel(size: n, count: ops)
        case .aesgcm(let n):
            guard pk.hasAESGCM else { throw ValidationError("--probe \(text): this CPU has no AES-GCM in libsodium (AES-NI)") }
            pk.tunnel(size: n, count: ops, aesGCM: true)
        case .session(let n): pk.session(size: n, count: ops)
        }
        guard hs.failures == 0, pk.failures == 0 else { throw ValidationError("probe \(text): an operation failed") }
        print("probe \(text): \(ops) ops" + (MallocCounter.count.map { ", \($0) malloc calls in the process so far" } ?? ""))
    }

    // MARK: Reporting

    func report(_ samples: [Variant: [Sample]], variants: [Variant]) {
        func med(_ v: Variant) -> Double { median(samples[v]!.map(\.opsPerSecond)) }
        func spread(_ v: Variant) -> (min: Double, med: Double, max: Double) {
            let r = samples[v]!.map(\.opsPerSecond).sorted()
            return (r.first!, median(r), r.last!)
        }
        print(Machine.describe())
        print("Method: after a warm-up, \(rounds) rounds × \(fmt(seconds, 2)) s of this thread's CPU time per variant; within a round the")
        print("variants of one table block take turns in \(Self.slice / 1_000_000) ms slices. min/median/max over rounds, ratios from medians.")
        print("Release build, one thread; time is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time.")
        print("")
        print("### Handshakes (Noise_IK_25519_ChaChaPoly_BLAKE2b, Sources/Node/Crypto/Handshake.swift)")
        print("")
        print("| operation | ops/s min | ops/s median | ops/s max | µs/op (median) |")
        print("|---|---:|---:|---:|---:|")
        let hsRows: [(Variant, String)] = [
            (.handshake, "full handshake, both sides: createInitiation → consumeInitiation + createResponse → consumeResponse"),
            (.responder, "responder per initiation: consumeInitiation + createResponse"),
            (.mac1, "mac1 check of an INIT: CookieChecker.mac1Valid"),
        ]
        for (v, label) in hsRows {
            let s = spread(v)
            print("| \(label) | \(grouped(s.min)) | \(grouped(s.med)) | \(grouped(s.max)) | \(fmt(1e6 / s.med, 2)) |")
        }
        let initiatorShare = 1e6 / med(.handshake) - 1e6 / med(.responder)
        print("")
        print("Initiator's share of a handshake (full − responder): \(fmt(initiatorShare, 1)) µs. "
              + "A flood of valid-mac1 INITs costs the responder \(fmt(1e6 / med(.responder), 1)) µs each; "
              + "one that fails mac1 costs \(fmt(1e6 / med(.mac1), 2)) µs (\(fmt(med(.mac1) / med(.responder), 0))× cheaper).")
        print("")
        print("### Tunnel: one packet sealed and opened in place on one core")
        print("")
        print("A packet's figure includes both ends' work (seal + open); a core doing one direction does about twice as many.")
        print("raw = libsodium crypto_aead_chacha20poly1305_ietf_encrypt/decrypt_detached on payload+tag;")
        print("tunnel = DataMessage.writeHeader + TransportKey.seal, then parseHeader + ReplayWindow.check + TransportKey.open + accept;")
        print("aesgcm = the tunnel row with an AES-256-GCM TransportKey (libsodium beforenm state, *_afternm per packet; absent without AES-NI);")
        print("session = Tunnels.send on A, then Tunnels.receive on B (two Tunnels after a handshake on a virtual clock, ChaCha20-Poly1305).")
        print("")
        print("| payload B | path | packets/s min | packets/s median | packets/s max | ns/packet | Gbit/s payload | × raw |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for n in pkSizes(variants) {
            let base = med(.raw(n))
            for (v, label) in [(Variant.raw(n), "raw libsodium"), (.tunnel(n), "tunnel (header, seal, replay, open)"),
                               (.aesgcm(n), "tunnel, AES-256-GCM"),
                               (.session(n), "full session layer (Tunnels)")] where samples[v] != nil {
                let s = spread(v)
                print("| \(n) | \(label) | \(grouped(s.min)) | \(grouped(s.med)) | \(grouped(s.max)) | "
                      + "\(fmt(1e9 / s.med, 0)) | \(fmt(s.med * Double(n) * 8 / 1e9, 2)) | \(fmt(s.med / base, 2)) |")
            }
        }
        print("")
        print("### Allocations in the timed loops")
        print("")
        let counted = samples.values.allSatisfy { $0.allSatisfy { $0.mallocs != nil } }
        print(counted ? "malloc calls: malloc/calloc/realloc/posix_memalign/aligned_alloc in the process, counted by perf/lib/malloccount.so (preloaded);"
                      : "malloc calls: not counted (run through perf/crypto, which preloads perf/lib/malloccount.so);")
        print("heap growth: glibc mallinfo2() bytes in use (uordblks + hblkhd) after a slice minus before, summed over a round "
              + "(it cannot see a malloc freed within the loop); arena: bytes taken from the system, likewise.")
        print("")
        print("| loop | ops timed (all rounds) | malloc calls per op | heap growth, largest round | arena growth, largest round | verdict |")
        print("|---|---:|---:|---:|---:|---|")
        for v in variants {
            let ss = samples[v]!
            let ops = ss.reduce(0) { $0 + $1.ops }
            let calls: UInt64? = counted ? ss.reduce(0) { $0 + $1.mallocs! } : nil
            let grow = ss.map(\.heapGrowth).max()!
            let arena = ss.map(\.arenaGrowth).max()!
            let fewest = ss.map(\.ops).min()!
            let unit: String
            switch v {
            case .handshake: unit = "handshake"
            case .responder: unit = "initiation"
            case .mac1: unit = "check"
            case .raw, .tunnel, .aesgcm, .session: unit = "packet"
            }
            let perOp = calls.map { Double($0) / Double(ops) }
            let growthPerOp = Double(grow) / Double(fewest)
            let verdict: String
            if perOp ?? 0 == 0, grow <= 0 {
                verdict = "0 bytes allocated per \(unit)" + (perOp == nil ? " (heap growth only: calls not counted)" : "")
            } else {
                let heap = grow <= 0 ? "heap does not grow"
                    : growthPerOp < 1 ? "heap does not grow per \(unit) (+\(grow) B over \(fewest): allocator caches)"
                    : "HEAP GROWS \(fmt(growthPerOp, 2)) B per \(unit)"
                verdict = (perOp.map { $0 > 0 ? ["ALLOCATES \(fmt($0, $0 < 10 ? 2 : 0)) times per \(unit)"] : [] } ?? []
                           + [heap]).joined(separator: "; ")
            }
            print("| \(v) | \(ops) | \(perOp.map { fmt($0, $0 == 0 || $0 >= 10 ? 0 : 2) } ?? "-") | \(grow) B | \(arena) B | \(verdict) |")
        }
    }

    func pkSizes(_ variants: [Variant]) -> [Int] {
        variants.compactMap { if case .raw = $0 { return $0.payloadSize } else { return nil } }
    }

    func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

    /// 1234567 -> "1 234 567" (a thin, unambiguous thousands separator).
    func grouped(_ x: Double) -> String {
        var s = String(Int(x.rounded()))
        var out = ""
        while s.count > 3 {
            out = " " + s.suffix(3) + out
            s.removeLast(3)
        }
        return s + out
    }

    func log(_ line: String) { FileHandle.standardError.write((line + "\n").data(using: .utf8)!) }
}

// MARK: - Handshakes

/// Two members, A (initiator) and B (responder), and one INIT from A kept for the
/// responder and mac1 loops (consumeInitiation does not check the timestamp:
/// the session layer does, after it, so a replayed INIT costs the full DH work).
struct HandshakeBench {
    let a: Identity
    let b: Identity
    var macsAtoB: MacGenerator
    var macsBtoA: MacGenerator
    let checkerB: CookieChecker
    /// B's member table as Tunnels keeps it: A's X25519 static, converted once.
    let aStatic: [UInt8]
    let timestamp = HandshakeTimestamp(unixSeconds: 1_700_000_000, nanoseconds: 0).bytes
    let now = Instant(ns: 1_000_000_000)
    let initiation: [UInt8]
    var failures = 0
    /// Bytes of every response, so no work can be optimised away.
    var sink = 0

    init() throws {
        a = Identity(secret: .generate())
        b = Identity(secret: .generate())
        macsAtoB = MacGenerator(peer: b.publicKey)
        macsBtoA = MacGenerator(peer: a.publicKey)
        checkerB = CookieChecker(identity: b)
        aStatic = a.publicKey.x25519!
        guard let (message, _) = InitiatorHandshake.createInitiation(
            identity: a, responder: b.publicKey, senderIndex: 1, timestamp: timestamp, macs: &macsAtoB, now: now)
        else { throw ValidationError("createInitiation failed") }
        initiation = message
        // The keys agree: A's send key opens what B would receive, and the other way.
        var probe = self
        guard let keys = probe.handshakeKeys() else { throw ValidationError("handshake failed") }
        var packet = [UInt8](repeating: 7, count: 64 + TransportKey.tagLength)
        let ok = packet.withUnsafeMutableBytes { p in
            keys.a.send.seal(counter: 3, buffer: p.baseAddress!, length: 64)
            guard keys.b.receive.open(counter: 3, buffer: p.baseAddress!, length: 64 + 16) else { return false }
            keys.b.send.seal(counter: 4, buffer: p.baseAddress!, length: 64)
            return keys.a.receive.open(counter: 4, buffer: p.baseAddress!, length: 64 + 16)
        }
        guard ok, packet.prefix(64).allSatisfy({ $0 == 7 }) else { throw ValidationError("handshake keys do not agree") }
    }

    mutating func handshakeKeys() -> (a: TransportKeys, b: TransportKeys)? {
        guard let (message, state) = InitiatorHandshake.createInitiation(
                identity: a, responder: b.publicKey, senderIndex: 1, timestamp: timestamp, macs: &macsAtoB, now: now),
              let received = consumeInitiation(identity: b, message: message, staticOf: memberStatic) else { return nil }
        guard let (response, keysB) = received.createResponse(senderIndex: 2, macs: &macsBtoA, now: now),
              let (index, keysA) = state.consumeResponse(response), index == 2 else { return nil }
        return (keysA, keysB)
    }

    /// What Tunnels passes: the static of a known member, nil for anyone else.
    func memberStatic(_ key: PublicKey) -> [UInt8]? { key == a.publicKey ? aStatic : nil }

    mutating func full(_ count: Int) {
        for _ in 0..<count where handshakeKeys() == nil { failures += 1 }
    }

    mutating func responder(_ count: Int) {
        for _ in 0..<count {
            guard let received = consumeInitiation(identity: b, message: initiation, staticOf: memberStatic) else {
                failures += 1
                continue
            }
            sink &+= received.createResponse(senderIndex: 2, macs: &macsBtoA, now: now)?.message.count ?? 0
        }
    }

    mutating func mac1(_ count: Int) {
        for _ in 0..<count where !checkerB.mac1Valid(initiation) { failures += 1 }
    }
}

// MARK: - Packets

/// One buffer per payload size, laid out as the engine lays out a DATA message
/// (header room, payload, tag room), shared by the raw, tunnel and session loops.
/// Opening in place restores the plaintext, so every loop seals the same payload.
struct PacketBench {
    static let maxPayload = 65_000
    let sizes: [Int]
    private var buffers: [Int: UnsafeMutableRawBufferPointer] = [:]
    // raw
    private let key: UnsafeMutablePointer<UInt8>
    private let nonce: UnsafeMutableRawPointer
    private var rawCounter: UInt64 = 0
    // tunnel
    private let sendKey: TransportKey
    private let receiveKey: TransportKey
    private var window = ReplayWindow()
    private var counter: UInt64 = 0
    // aesgcm (nil without AES-NI)
    private let aesSendKey: TransportKey?
    private let aesReceiveKey: TransportKey?
    private var aesWindow = ReplayWindow()
    private var aesCounter: UInt64 = 0
    var hasAESGCM: Bool { aesSendKey != nil }
    private let receiverIndex: UInt32 = 0x1234_5678
    // session
    private var tunnelsA: Tunnels
    private var tunnelsB: Tunnels
    private let peer = PeerID(rawValue: 0)
    private let endpointA = Endpoint.v4(10, 0, 0, 1, port: 51820)
    private var now: Instant
    var failures = 0

    init(sizes: [Int]) throws {
        self.sizes = sizes
        for n in sizes where buffers[n] == nil {
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: DataMessage.overhead + n, alignment: 64)
            for i in 0..<b.count { b[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
            buffers[n] = b
        }
        let keyBytes = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        key = .allocate(capacity: 32)
        key.initialize(from: keyBytes, count: 32)
        nonce = .allocate(byteCount: 12, alignment: 8)
        nonce.initializeMemory(as: UInt8.self, repeating: 0, count: 12)
        sendKey = TransportKey(bytes: keyBytes)
        receiveKey = TransportKey(bytes: keyBytes)
        aesSendKey = NoiseCipher.aesGCM.isAvailable ? TransportKey(bytes: keyBytes, cipher: .aesGCM) : nil
        aesReceiveKey = NoiseCipher.aesGCM.isAvailable ? TransportKey(bytes: keyBytes, cipher: .aesGCM) : nil

        let a = Identity(secret: .generate()), b = Identity(secret: .generate())
        let endpointB = Endpoint.v4(10, 0, 0, 2, port: 51820)
        // ChaCha20-Poly1305 sessions, so that the session row compares with raw and tunnel.
        tunnelsA = Tunnels(identity: a, peers: [PeerSpec(publicKey: b.publicKey, endpoint: endpointB)], seed: 1,
                           cipher: .chacha20poly1305)
        tunnelsB = Tunnels(identity: b, peers: [PeerSpec(publicKey: a.publicKey, endpoint: endpointA)], seed: 2,
                           cipher: .chacha20poly1305)
        now = Instant(ns: 1_000_000_000)
        try establish(endpointB: endpointB)
    }

    /// Drives a handshake between the two Tunnels on a virtual clock (1 ms per
    /// step, no loss), as the session tests do: A connects, B answers, A's
    /// keepalive confirms.
    private mutating func establish(endpointB: Endpoint) throws {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
        defer { scratch.deallocate() }
        func deliver(_ t: Transmit, to tunnels: inout Tunnels, from: Endpoint, now: Instant) {
            scratch.copyBytes(from: t.bytes)
            _ = tunnels.receive(scratch, length: t.bytes.count, from: from, now: now, underLoad: false)
        }
        tunnelsA.connect(peer, now: now)
        for _ in 0..<200 {
            let wall = HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000,
                                          nanoseconds: UInt32(now.ns % 1_000_000_000))
            if let d = tunnelsA.pollTimeout()?.deadline, d <= now { tunnelsA.handleTimeout(now: now, wallClock: wall) }
            if let d = tunnelsB.pollTimeout()?.deadline, d <= now { tunnelsB.handleTimeout(now: now, wallClock: wall) }
            while let t = tunnelsA.pollTransmit() { deliver(t, to: &tunnelsB, from: endpointA, now: now) }
            while let t = tunnelsB.pollTransmit() { deliver(t, to: &tunnelsA, from: endpointB, now: now) }
            while tunnelsA.pollEvent() != nil {}
            while tunnelsB.pollEvent() != nil {}
            if tunnelsA.peerStatus(peer, now: now)?.state == .established,
               tunnelsB.peerStatus(peer, now: now)?.state == .established { break }
            now = now + .milliseconds(1)
        }
        guard tunnelsA.peerStatus(peer, now: now)?.state == .established,
              tunnelsB.peerStatus(peer, now: now)?.state == .established else {
            throw ValidationError("the two Tunnels did not establish a session")
        }
    }

    /// libsodium alone: nonce = 4 zero bytes || counter (LE), no AD, tag after the payload.
    mutating func raw(size: Int, count: Int) {
        let p = buffers[size]!.baseAddress!.assumingMemoryBound(to: UInt8.self) + DataMessage.headerSize
        let n = nonce.assumingMemoryBound(to: UInt8.self)
        for _ in 0..<count {
            rawCounter &+= 1
            (nonce + 4).storeBytes(of: rawCounter.littleEndian, as: UInt64.self)
            _ = crypto_aead_chacha20poly1305_ietf_encrypt_detached(p, p + size, nil, p, UInt64(size), nil, 0, nil, n, key)
            if crypto_aead_chacha20poly1305_ietf_decrypt_detached(p, nil, p, UInt64(size), p + size, nil, 0, n, key) != 0 {
                failures += 1
            }
        }
    }

    /// What the data path does around the AEAD, without the session layer
    /// (`aesGCM`: with AES-256-GCM keys, their own counter and window).
    mutating func tunnel(size: Int, count: Int, aesGCM: Bool = false) {
        let buffer = buffers[size]!
        let payload = buffer.baseAddress! + DataMessage.headerSize
        let length = size + DataMessage.overhead
        let (seal, open) = aesGCM ? (aesSendKey!, aesReceiveKey!) : (sendKey, receiveKey)
        var counter = aesGCM ? aesCounter : self.counter
        var window = aesGCM ? aesWindow : self.window
        defer {
            if aesGCM { (aesCounter, aesWindow) = (counter, window) } else { (self.counter, self.window) = (counter, window) }
        }
        for _ in 0..<count {
            let c = counter
            counter &+= 1
            DataMessage.writeHeader(.init(receiverIndex: receiverIndex, counter: c), into: buffer, at: 0)
            seal.seal(counter: c, buffer: payload, length: size)
            guard let h = DataMessage.parseHeader(UnsafeRawBufferPointer(buffer), length: length),
                  h.receiverIndex == receiverIndex, window.check(h.counter),
                  open.open(counter: h.counter, buffer: payload, length: size + DataMessage.tagSize),
                  window.accept(h.counter) else {
                failures += 1
                continue
            }
        }
    }

    /// The session layer's public data path: A seals for B, B opens.
    mutating func session(size: Int, count: Int) {
        let buffer = buffers[size]!
        for _ in 0..<count {
            guard case .send(_, let offset, let length) = tunnelsA.send(
                      to: peer, buffer, payloadOffset: DataMessage.headerSize, payloadLength: size, now: now),
                  case .data(_, _, let payloadLength) = tunnelsB.receive(
                      UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]), length: length,
                      from: endpointA, now: now, underLoad: false),
                  payloadLength == size else {
                failures += 1
                continue
            }
        }
    }

    /// Every loop decrypted what it encrypted: the payloads still hold their pattern.
    func payloadIntact() -> Bool {
        buffers.values.allSatisfy { b in
            (DataMessage.headerSize..<(b.count - DataMessage.tagSize)).allSatisfy { b[$0] == UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        }
    }
}

// MARK: - Machine and heap

enum Machine {
    /// "2 × AMD EPYC (avx2, no avx512f); libsodium 1.0.18; load average 3.05 at start"
    static func describe() -> String {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        func field(_ name: String) -> String? {
            cpuinfo.split(separator: "\n").first { $0.hasPrefix(name) }
                .flatMap { $0.split(separator: ":", maxSplits: 1).last }
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let model = field("model name") ?? "unknown CPU"
        let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
        let simd = ["avx2", "avx512f"].map { flags.contains($0) ? $0 : "no \($0)" }.joined(separator: ", ")
        let load = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?")
            .split(separator: " ").first.map(String.init) ?? "?"
        let sodium = String(cString: sodium_version_string())
        return "Machine: nproc \(sysconf(Int32(_SC_NPROCESSORS_ONLN))), \(model) (\(simd)); "
            + "libsodium \(sodium); 1-minute load average \(load) at the start of the run."
    }
}

/// glibc's mallinfo2() (2.33+). Swift's Glibc module leaves out <malloc.h>, so
/// it is looked up with dlsym. It returns `struct mallinfo2` (ten size_t, 80
/// bytes) by value, which both x86-64 and arm64 return through a buffer the
/// caller provides; declaring the result as any larger imported C struct
/// (rusage, 144 bytes) gets that calling convention right, and the fields are
/// read at their offsets.
struct HeapStats {
    var arena = 0
    var inUse = 0

    private typealias MallInfo2 = @convention(c) () -> rusage
    private static let mallinfo2: MallInfo2? = {
        assert(MemoryLayout<rusage>.size >= 10 * MemoryLayout<Int>.size)
        return dlsym(nil, "mallinfo2").map { unsafeBitCast($0, to: MallInfo2.self) }
    }()

    static func now() -> HeapStats {
        guard let f = mallinfo2 else { return HeapStats() }
        var info = f()
        return withUnsafeBytes(of: &info) { b in
            // arena @0, hblkhd (mmapped bytes) @32, uordblks (allocated bytes) @56
            HeapStats(arena: b.load(fromByteOffset: 0, as: Int.self),
                      inUse: b.load(fromByteOffset: 56, as: Int.self) + b.load(fromByteOffset: 32, as: Int.self))
        }
    }
}
