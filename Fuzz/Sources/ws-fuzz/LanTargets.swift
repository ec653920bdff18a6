// LAN discovery's mDNS parser and machine (Wire/MDNS.swift, Protocol/LAN/LanDiscovery.swift):
// anything on UDP 5353 of a LAN reaches them.
//
// Oracles: the parser never traps and never reads past the input (exact
// buffers); what it parsed serializes to bytes it parses again (unless the
// uncompressed form outgrows the 9000-byte limit), and a second round gives the
// same bytes; an announcement it extracts survives its own round trip; the
// machine takes nothing that is not signed by a member.
import Support
import Wire
import Crypto
import Protocol

struct LanFixture: @unchecked Sendable {
    let me = Identity(secret: SecretKey(bytes: [UInt8](repeating: 3, count: 32))!)
    let member = Identity(secret: SecretKey(bytes: [UInt8](repeating: 4, count: 32))!)
    let announcement: [UInt8]

    init() {
        announcement = LanAnnouncement.signed(by: member, port: 51820, sequence: 9,
                                              addresses: [.v4(192, 168, 1, 11, port: 0)]).serialize()
    }
}

let lanFixture = LanFixture()

let lanTargets: [FuzzTarget] = [
    FuzzTarget(name: "mdns", summary: "DNSMessage.parse <-> serialize, LanAnnouncement.extract, LanDiscovery.handle") { input in
        let f = lanFixture
        let parsed = withExactBuffer(input) { DNSMessage.parse(UnsafeRawBufferPointer($0)) }
        if case .success(let m) = parsed {
            let once = m.serialize()
            if once.count <= MDNS.maxMessageSize {
                guard case .success(let again) = DNSMessage.parse(once) else { return check(false, "serialize wrote bytes parse refuses") }
                check(again.serialize() == once, "serialize is not stable over a round trip")
            }
            for case .success(let a) in LanAnnouncement.extract(from: m) ?? [] {
                let back = LanAnnouncement.extract(from: a.message())?.first
                check(back.map { (try? $0.get()) == a } ?? false, "announcement round trip")
            }
        }
        var lan = LanDiscovery(identity: f.me, members: [f.member.publicKey], port: 51820, firstSequence: 1, seed: 1)
        lan.start(addresses: [.v4(192, 168, 1, 10, port: 0)], now: Instant(ns: 1_000_000_000))
        lan.handle(input, from: .v4(192, 168, 1, 11, port: 5353), now: Instant(ns: 2_000_000_000))
        while let e = lan.pollEvent() {
            guard case .discovered(_, let ep, _) = e else { continue }
            check(ep == .v4(192, 168, 1, 11, port: ep.port), "discovered somewhere else than the sender")
            // Only the member's key can sign: any taken announcement is one it signed.
            let taken = (try? DNSMessage.parse(input).get()).flatMap { LanAnnouncement.extract(from: $0) } ?? []
            check(taken.contains { (try? $0.get())?.isValidlySigned ?? false }, "took an unsigned announcement")
        }
    } seeds: {
        let f = lanFixture
        return [f.announcement, LanAnnouncement.query(), Array(f.announcement.prefix(40)), [0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]]
    },
]
