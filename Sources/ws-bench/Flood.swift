// The packet injector behind tests/flood.sh and perf/flood (security review
// Part C.4): crafts attack datagrams with the project's own Wire and Crypto
// types, so the bytes are what a real attacker who knows the public keys would
// send, and sends them at a fixed rate for a fixed time.
//
//   ws-bench flood --kind K --to VICTIM:PORT [--from IP,IP,...] [--spoof IP:PORT]
//                  --rate PPS --seconds S [--victim-key B64] [--member-key B64]
//
// Kinds (Part C.4's names):
//   init        F1  HANDSHAKE_INIT with a valid mac1 for --victim-key from a
//                   stranger's static key, a fresh ephemeral per message (a pool
//                   of 256, sent round-robin), mac2 zero (no cookie).
//   relay-init  F3  the same, wrapped in RELAY(id = MemberID(--member-key)), as
//                   an anchor delivers a member's datagram. Meant with --spoof
//                   ANCHOR_IP:PORT: a member accepts RELAY only from an anchor's
//                   endpoint, so the attacker forges that source.
//   garbage     F4  the 1-byte datagram 0x01.
//   probe       F5  PATH_PROBE carrying --member-key (a member's key is public:
//                   it rides in clear in every probe), a random txid each.
//   replay      F11 the datagram in --payload-file (e.g. a captured real
//                   HANDSHAKE_INIT), the same bytes every time.
//   init-cookie F2  HANDSHAKE_INITs as `init`, from many sources that first
//                   collect a cookie each: phase 1 sends one INIT per source
//                   without a cookie per round (up to 12 rounds, 0.4 s apart;
//                   the victim is under load, so it answers each with a
//                   COOKIE_REPLY for that source), phase 2 (--seconds) sends
//                   at --rate round-robin with mac2 made from each source's
//                   cookie: past the cookie check, only the per-source (IPv6:
//                   per-/64) limiter stands between them and the DH work.
//                   Both phases' datagrams are in "sent"; "collected" says how
//                   many sources got a cookie, "phase1" how many were sent
//                   collecting.
//
// Sources: --from (or --from-file, one address a line) binds one UDP socket per listed local address (the caller
// puts those addresses on an interface in the attacker's namespace) and sends
// round-robin over them; answers (cookie replies, probe replies) are read from
// the same sockets and counted. --spoof sends from a raw IPv4 socket with a
// forged source address and port instead (answers then go to the forged
// source, not to us). Without either: one socket on an ephemeral port.
//
// Output, one line on stdout, for the scripts to parse:
//   flood kind=init sent=10000 seconds=5.00 pps=2000 replies=812 reply_bytes=51968 errors=0 sources=1
// "errors" counts sends the kernel refused (EAGAIN, ENOBUFS): not sent, not in "sent".
import ArgumentParser
import Crypto
import Foundation
import Glibc
import Support
import Wire

struct Flood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flood",
        abstract: "Send crafted attack datagrams at a fixed rate (tests/flood.sh, perf/flood).")

    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case initiation = "init", relayInit = "relay-init", garbage, probe, replay, initCookie = "init-cookie"
    }

    @Option(help: "init | relay-init | garbage | probe | replay | init-cookie") var kind: Kind
    @Option(help: "Victim, IP:PORT.") var to: String
    @Option(help: "Comma-separated local source addresses, one socket each (IPv4 or IPv6).") var from: String?
    @Option(help: "A file of local source addresses, one a line (as --from; thousands are fine).") var fromFile: String?
    @Option(help: "Forged source IPv4:PORT, sent from a raw socket (needs root).") var spoof: String?
    @Option(help: "Datagrams per second, all sources together.") var rate: Double = 1000
    @Option(help: "Seconds to send.") var seconds: Double = 5
    @Option(help: "The victim's public key (init, relay-init: for mac1).") var victimKey: String?
    @Option(help: "A member's public key (relay-init: the RELAY id; probe: the probe's sender).") var memberKey: String?
    @Option(help: "replay: a file holding one captured datagram, sent again and again.") var payloadFile: String?

    func run() throws {
        guard rate > 0, seconds > 0 else { throw ValidationError("--rate and --seconds must be positive") }
        let pool = try makePool()
        let dest = try SockAddr(parse: to)
        var out: [Sender] = []
        if let spoof {
            out.append(try RawSender(source: try SockAddr(parse: spoof), destination: dest))
        } else if let list = try sourceList() {
            for ip in list {
                out.append(try UDPSender(bind: try SockAddr(parse: String(ip), port: 0), destination: dest))
            }
        } else {
            out.append(try UDPSender(bind: try SockAddr(parse: dest.isV6 ? "::" : "0.0.0.0", port: 0), destination: dest))
        }
        var sent = 0, errors = 0, replies = 0, replyBytes = 0
        var rx = [UInt8](repeating: 0, count: 2048)
        // init-cookie: one cookie state per source (mac2 for that source's address).
        var macs: [MacGenerator] = []
        if kind == .initCookie { macs = Array(repeating: MacGenerator(peer: try key(victimKey, "victim-key")), count: out.count) }
        func drain() {
            for (k, s) in out.enumerated() {
                while true {
                    let n = s.receive(&rx)
                    if n < 0 { break }
                    replies += 1
                    replyBytes += n
                    if !macs.isEmpty { _ = macs[k].consumeCookieReply(Array(rx[0..<n]), now: Instant(ns: monotonicNs())) }
                }
            }
        }
        func stamped(_ msg: [UInt8], source k: Int) -> [UInt8] {
            guard !macs.isEmpty else { return msg }
            var m = msg
            macs[k].stamp(&m, now: Instant(ns: monotonicNs()))
            return m
        }
        var phase1 = 0, phase1Errors = 0
        if kind == .initCookie {
            // Phase 1: a cookie for every source. One INIT per source still
            // without one per round (a second INIT before the answer would make
            // that answer unusable: it is bound to the last mac1 sent), paced at
            // --rate, plus enough from sources that have one to keep the victim's
            // load meter (128/s) tripped.
            var j = 0
            for _ in 0..<12 {
                let now0 = Instant(ns: monotonicNs())
                var need = (0..<out.count).filter { !macs[$0].hasFreshCookie(now: now0) }
                if need.isEmpty { break }
                let have = (0..<out.count).filter { macs[$0].hasFreshCookie(now: now0) }
                if need.count < 200, !have.isEmpty { need += (0..<(200 - need.count)).map { have[$0 % have.count] } }
                let t0 = monotonicNs()
                for (n, k) in need.enumerated() {
                    while Double(monotonicNs() - t0) / 1e9 * rate < Double(n) { usleep(100) }
                    if out[k].send(stamped(pool[j % pool.count], source: k)) { sent += 1 } else { errors += 1 }
                    j += 1
                }
                // The answers wait in each socket's buffer (one or two per source).
                usleep(400_000)
                drain()
            }
            phase1 = sent
            phase1Errors = errors
        }
        let collected = macs.isEmpty ? 0 : (0..<out.count).filter { macs[$0].hasFreshCookie(now: Instant(ns: monotonicNs())) }.count
        let phase1Replies = replies
        let start = monotonicNs()
        let end = start + UInt64(seconds * 1e9)
        var lastDrain = start
        var i = 0
        while true {
            let now = monotonicNs()
            if now >= end { break }
            let due = Int(Double(now - start) / 1e9 * rate) - (sent + errors - phase1 - phase1Errors)
            if due <= 0 {
                // Draining visits every socket: with thousands of sources, rarely.
                if now - lastDrain > (out.count > 64 ? 250_000_000 : 10_000_000) { drain(); lastDrain = now }
                usleep(200)
                continue
            }
            for _ in 0..<min(due, 256) {
                let k = i % out.count
                if out[k].send(stamped(pool[i % pool.count], source: k)) { sent += 1 } else { errors += 1 }
                i += 1
            }
        }
        let elapsed = Double(monotonicNs() - start) / 1e9
        usleep(300_000)  // answers still in flight
        drain()
        let cookieFigures = kind == .initCookie ? " collected=\(collected) phase1=\(phase1) phase1_replies=\(phase1Replies)" : ""
        print("flood kind=\(kind.rawValue) sent=\(sent) seconds=\(String(format: "%.2f", elapsed)) pps=\(Int(Double(sent - phase1) / elapsed)) replies=\(replies) reply_bytes=\(replyBytes) errors=\(errors) sources=\(out.count)\(cookieFigures)")
    }

    /// --from or --from-file: the local source addresses, or nil for none given.
    func sourceList() throws -> [String]? {
        if let fromFile {
            guard let text = try? String(contentsOfFile: fromFile, encoding: .utf8) else { throw ValidationError("cannot read \(fromFile)") }
            let list = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !list.isEmpty else { throw ValidationError("\(fromFile) lists no address") }
            return list
        }
        return from.map { $0.split(separator: ",").map(String.init) }
    }

    func key(_ b64: String?, _ flag: String) throws -> PublicKey {
        guard let b64, let k = PublicKey(base64: b64) else { throw ValidationError("--\(flag) (a base64 public key) is needed") }
        return k
    }

    /// Distinct messages sent round-robin: fresh ephemerals / txids without
    /// paying a handshake's DH work per datagram while sending.
    func makePool() throws -> [[UInt8]] {
        switch kind {
        case .garbage:
            return [[0x01]]
        case .replay:
            guard let payloadFile, let data = FileManager.default.contents(atPath: payloadFile), !data.isEmpty else {
                throw ValidationError("--payload-file (a captured datagram) is needed")
            }
            return [Array(data)]
        case .probe:
            let member = try key(memberKey, "member-key")
            return (0..<256).map { _ in
                PathProbe(txid: Sodium.randomBytes(8).reduce(0) { $0 << 8 | UInt64($1) }, sender: member).bytes
            }
        case .initiation, .relayInit, .initCookie:
            let victim = try key(victimKey, "victim-key")
            let stranger = Identity(secret: SecretKey.generate())
            var header: [UInt8] = []
            if kind == .relayInit {
                let id = MemberID(publicKey: try key(memberKey, "member-key"))
                header = [UInt8](repeating: 0, count: RelayMessage.headerSize)
                _ = header.withUnsafeMutableBytes { RelayMessage.writeHeader(id, into: $0, at: 0) }
            }
            var macs = MacGenerator(peer: victim)
            return try (0..<256).map { _ in
                let index = Sodium.randomBytes(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                guard let made = InitiatorHandshake.createInitiation(
                    identity: stranger, responder: victim, senderIndex: index,
                    timestamp: [UInt8](repeating: 0, count: HandshakeConstants.timestampLength),
                    macs: &macs, now: Instant(ns: monotonicNs())) else {
                    throw ValidationError("the victim key has no X25519 form")
                }
                return header + made.message
            }
        }
    }
}

private func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// An IPv4 or IPv6 socket address, parsed from "IP:PORT", "[IPv6]:PORT" or a bare IP (with `port`).
struct SockAddr {
    var storage = sockaddr_storage()
    var length: socklen_t = 0
    var isV6: Bool { storage.ss_family == sa_family_t(AF_INET6) }

    init(parse s: String, port fixed: UInt16? = nil) throws {
        var host = s
        var port = fixed ?? 0
        if fixed == nil {
            guard let colon = s.lastIndex(of: ":"), let p = UInt16(s[s.index(after: colon)...]) else {
                throw ValidationError("'\(s)' is not IP:PORT")
            }
            host = String(s[..<colon])
            port = p
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var a4 = sockaddr_in()
        var a6 = sockaddr_in6()
        if inet_pton(AF_INET, host, &a4.sin_addr) == 1 {
            a4.sin_family = sa_family_t(AF_INET)
            a4.sin_port = port.bigEndian
            withUnsafeBytes(of: a4) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else if inet_pton(AF_INET6, host, &a6.sin6_addr) == 1 {
            a6.sin6_family = sa_family_t(AF_INET6)
            a6.sin6_port = port.bigEndian
            withUnsafeBytes(of: a6) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            throw ValidationError("'\(host)' is not an IP address")
        }
    }

    var v4: sockaddr_in { withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) } }
}

protocol Sender {
    /// True when the kernel took the datagram.
    func send(_ bytes: [UInt8]) -> Bool
    /// One pending answer into `buffer`: its length, or -1 when none.
    func receive(_ buffer: inout [UInt8]) -> Int
}

/// A UDP socket bound to one source address, sending to one destination.
final class UDPSender: Sender {
    let fd: Int32
    var destination: SockAddr

    init(bind: SockAddr, destination: SockAddr) throws {
        let s = socket(Int32(bind.storage.ss_family), Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard s >= 0 else { throw ValidationError("socket: errno \(errno)") }
        var b = bind
        let len = b.length  // not read inside the closure: that would overlap the access to `b`
        let rc = withUnsafePointer(to: &b.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(s, $0, len) }
        }
        guard rc == 0 else { throw ValidationError("bind: errno \(errno) (is the address on an interface here?)") }
        fd = s
        self.destination = destination
    }

    func send(_ bytes: [UInt8]) -> Bool {
        let len = destination.length
        return bytes.withUnsafeBytes { buf in
            withUnsafePointer(to: &destination.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, buf.count, 0, $0, len) == buf.count
                }
            }
        }
    }

    func receive(_ buffer: inout [UInt8]) -> Int {
        buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
    }
}

/// A raw IPv4 socket (IP_HDRINCL) that writes its own IP and UDP headers with a
/// forged source. The kernel fills in the IP checksum and id; the UDP checksum
/// is 0 ("none", allowed over IPv4).
final class RawSender: Sender {
    let fd: Int32
    var destination: SockAddr
    let header: [UInt8]

    init(source: SockAddr, destination: SockAddr) throws {
        guard !source.isV6, !destination.isV6 else { throw ValidationError("--spoof is IPv4 only") }
        fd = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue), Int32(IPPROTO_RAW))
        guard fd >= 0 else { throw ValidationError("raw socket: errno \(errno) (root?)") }
        self.destination = destination
        let s = source.v4, d = destination.v4
        var h = [UInt8](repeating: 0, count: 28)
        h[0] = 0x45
        h[8] = 64
        h[9] = UInt8(IPPROTO_UDP)
        withUnsafeBytes(of: s.sin_addr.s_addr) { h.replaceSubrange(12..<16, with: $0) }
        withUnsafeBytes(of: d.sin_addr.s_addr) { h.replaceSubrange(16..<20, with: $0) }
        withUnsafeBytes(of: s.sin_port) { h.replaceSubrange(20..<22, with: $0) }  // already network order
        withUnsafeBytes(of: d.sin_port) { h.replaceSubrange(22..<24, with: $0) }
        header = h
    }

    func send(_ bytes: [UInt8]) -> Bool {
        var packet = header + bytes
        let total = UInt16(packet.count), udp = UInt16(packet.count - 20)
        packet[2] = UInt8(total >> 8); packet[3] = UInt8(total & 0xFF)
        packet[24] = UInt8(udp >> 8); packet[25] = UInt8(udp & 0xFF)
        let len = destination.length
        return packet.withUnsafeBytes { buf in
            withUnsafePointer(to: &destination.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buf.baseAddress, buf.count, 0, $0, len) == buf.count
                }
            }
        }
    }

    func receive(_ buffer: inout [UInt8]) -> Int { -1 }
}
