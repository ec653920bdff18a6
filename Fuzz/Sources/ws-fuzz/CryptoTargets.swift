// The handshake's consume side (review C.2 row 16): consumeInitiation,
// InitiatorHandshake.consumeResponse, MacGenerator.consumeCookieReply,
// CookieChecker.mac1Valid / mac2Valid.
//
// Valid messages cannot be stored as seeds (ephemerals and nonces are random
// per run), so the input is a *difference*: byte 0 picks the entry point, and
// the rest is XORed onto a valid message made at start (all zeros = the valid
// message itself; a longer or shorter input changes the length). The fuzzer
// thus explores the neighbourhood of an authentic message in every run.
//
// Oracles: authentication covers exactly the bytes the layout says (changing
// any other byte is accepted, changing a covered one is refused); a failed
// consume changes nothing (the valid message is still accepted afterwards).
import Support
import Wire
import Crypto
import Protocol

struct HandshakeFixture: @unchecked Sendable {
    let initiator: Identity
    let responder: Identity
    let initiation: [UInt8]
    let state: InitiatorHandshake
    let response: [UInt8]
    let macs: MacGenerator  // the initiator's, waiting for a cookie reply to `initiation`
    let cookieReply: [UInt8]
    let checker: CookieChecker  // the responder's
    let source = Endpoint.v4(198, 51, 100, 7, port: 40000)
    let now = Instant(ns: 1_000_000_000)

    init() {
        initiator = Identity(secret: SecretKey(bytes: [UInt8](repeating: 1, count: 32))!)
        responder = Identity(secret: SecretKey(bytes: [UInt8](repeating: 2, count: 32))!)
        var macs = MacGenerator(peer: responder.publicKey)
        let ts = HandshakeTimestamp(unixSeconds: 1_700_000_000, nanoseconds: 0).bytes
        let (initiation, state) = InitiatorHandshake.createInitiation(
            identity: initiator, responder: responder.publicKey, senderIndex: 0x11, timestamp: ts, macs: &macs, now: now)!
        let received = consumeInitiation(identity: responder, message: initiation)!
        var back = MacGenerator(peer: initiator.publicKey)
        response = received.createResponse(senderIndex: 0x22, macs: &back, now: now)!.message
        var checker = CookieChecker(identity: responder)
        cookieReply = checker.createCookieReply(to: initiation, receiverIndex: 0x11, source: source, now: now)
        self.initiation = initiation
        self.state = state
        self.macs = macs
        self.checker = checker
    }
}

let handshake = HandshakeFixture()

/// `valid` XOR `delta`, with the length of `delta` (bytes past `valid` are `delta`'s own).
func xorOnto(_ valid: [UInt8], _ delta: [UInt8]) -> [UInt8] {
    delta.enumerated().map { i, d in i < valid.count ? valid[i] ^ d : d }
}

/// Whether `a` and `b` agree on `range` (both long enough).
func same(_ a: [UInt8], _ b: [UInt8], _ range: Range<Int>) -> Bool {
    a.count >= range.upperBound && b.count >= range.upperBound && a[range] == b[range]
}

let cryptoTargets: [FuzzTarget] = [
    FuzzTarget(name: "crypto-handshake", summary: "consumeInitiation/Response/CookieReply, CookieChecker mac1/mac2") { input in
        let f = handshake
        guard let selector = input.first else { return }
        let delta = Array(input.dropFirst())
        switch selector % 5 {
        case 0:
            let m = xorOnto(f.initiation, delta)
            if let r = consumeInitiation(identity: f.responder, message: m) {
                // Noise covers bytes 8..<148; the type word must still be exact; index and macs are not covered.
                check(m.count == 180 && word0(m) == 1 && same(m, f.initiation, 8..<148), "forged INIT accepted")
                check(r.initiator == f.initiator.publicKey, "INIT from the wrong initiator")
            } else {
                check(!(m.count == 180 && word0(m) == 1 && same(m, f.initiation, 8..<148)), "authentic INIT refused")
            }
        case 1:
            let m = xorOnto(f.response, delta)
            let ok = f.state.consumeResponse(m) != nil
            let authentic = m.count == 92 && word0(m) == 2 && same(m, f.response, 8..<60)
            check(ok == authentic, "RESP acceptance \(ok) for authentic \(authentic)")
            // The state is a value: a failed consume leaves it able to take the real response.
            if !ok { check(f.state.consumeResponse(f.response) != nil, "a failed RESP spoiled the handshake") }
        case 2:
            var macs = f.macs
            let m = xorOnto(f.cookieReply, delta)
            let fresh = macs.hasFreshCookie(now: f.now)
            let ok = macs.consumeCookieReply(m, now: f.now)
            let authentic = m.count == 64 && word0(m) == 3 && same(m, f.cookieReply, 8..<64)
            check(ok == authentic, "COOKIE_REPLY acceptance \(ok) for authentic \(authentic)")
            if !ok {
                check(macs.hasFreshCookie(now: f.now) == fresh, "a failed COOKIE_REPLY changed the cookie")
                check(macs.consumeCookieReply(f.cookieReply, now: f.now), "a failed COOKIE_REPLY spoiled the wait")
            } else {
                check(macs.hasFreshCookie(now: f.now), "cookie taken but not fresh")
            }
        case 3:
            // mac1 over an INIT (or a RESP, for the other key: refused unless it is ours).
            let m = xorOnto(f.initiation, delta)
            if f.checker.mac1Valid(m) {
                check(m.count == 180 && word0(m) == 1 && same(m, f.initiation, 0..<164), "forged mac1 accepted")
            } else {
                check(!(m.count == 180 && same(m, f.initiation, 0..<164)), "authentic mac1 refused")
            }
        default:
            var checker = f.checker
            let m = xorOnto(f.initiation, delta)
            let later = f.now + .milliseconds(UInt64(delta.first ?? 0) * 1000)
            _ = checker.mac2Valid(m, source: f.source, now: later)
            _ = checker.createCookieReply(to: m, receiverIndex: 1, source: f.source, now: later)
        }
    } seeds: {
        (0..<5).map { sel -> [UInt8] in
            let size = [180, 92, 64, 180, 180][sel]
            return [UInt8(sel)] + [UInt8](repeating: 0, count: size)
        } + [[1] + [UInt8](repeating: 0, count: 91) + [0, 0, 0, 1]]
    },
]
