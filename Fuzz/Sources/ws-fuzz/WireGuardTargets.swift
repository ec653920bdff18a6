// WireGuard's suite (issue 16): the 148-byte INIT's parser, and the consume
// side of the handshake in the neighbourhood of authentic messages, as
// `crypto-handshake` does for Whalescale's (input = selector + XOR difference
// onto a valid message made at start).
//
// Oracles: the INIT authenticates exactly when its type word and the Noise
// part (bytes 8..<116) are unchanged; the RESP when its type word, receiver
// index and Noise part (8..<60) are; mac1 of an INIT is valid exactly when
// bytes 0..<132 are unchanged (mac2 and only mac2 may differ).
import Support
import Wire
import Crypto
import Protocol

struct WireGuardFixture: @unchecked Sendable {
    let initiator = Identity(secret: SecretKey(bytes: [UInt8](repeating: 3, count: 32))!)
    let responder = Identity(secret: SecretKey(bytes: [UInt8](repeating: 4, count: 32))!)
    let psk = PresharedKey(bytes: [UInt8](repeating: 5, count: 32))
    let initiation: [UInt8]
    let state: WireGuardInitiator
    let response: [UInt8]
    let checker: CookieChecker
    let staticStatic: StaticStatic
    let now = Instant(ns: 1_000_000_000)

    var initiatorKey: PublicKey { PublicKey(bytes: initiator.staticPublic)! }

    init() {
        let responderKey = PublicKey(bytes: responder.staticPublic)!
        let initiatorKey = PublicKey(bytes: initiator.staticPublic)!
        var macs = WireGuardIK.makeMacs(peer: responderKey)
        let ts = HandshakeTimestamp(unixSeconds: 1_700_000_000, nanoseconds: 0).bytes
        let (initiation, state) = WireGuardIK.createInitiation(identity: initiator, responder: responderKey, senderIndex: 0x11,
                                                               timestamp: ts, psk: psk, macs: &macs, now: now)!
        let ss = Crypto.staticStatic(identity: responder, peerStatic: initiator.staticPublic)!
        let opened = WireGuardIK.openInitiation(identity: responder, message: initiation)!
        let received = WireGuardIK.authenticate(opened, staticStatic: ss, initiator: initiatorKey)!
        var back = WireGuardIK.makeMacs(peer: initiatorKey)
        response = WireGuardIK.createResponse(to: received, senderIndex: 0x22, psk: psk, macs: &back, now: now)!.message
        self.initiation = initiation
        self.state = state
        self.staticStatic = ss
        checker = CookieChecker(wireGuardIdentity: responder)
    }
}

let wireGuard = WireGuardFixture()

let wireGuardTargets: [FuzzTarget] = [
    FuzzTarget(name: "wireguard-init", summary: "WireGuardInitiationMessage(bytes:) <-> .bytes") { input in
        let m = WireGuardInitiationMessage(bytes: input)
        check((m != nil) == (input.count == 148 && word0(input) == 1), "WireGuard INIT acceptance")
        if let m { check(m.bytes == input, "WireGuard INIT round trip") }
    } seeds: {
        [WireGuardInitiationMessage(senderIndex: 0x01020304, noise: [UInt8](repeating: 0x33, count: 108)).bytes]
    },

    FuzzTarget(name: "wireguard-handshake", summary: "WireGuardIK open/authenticate, consumeResponse, mac1 (BLAKE2s)") { input in
        let f = wireGuard
        guard let selector = input.first else { return }
        let delta = Array(input.dropFirst())
        switch selector % 3 {
        case 0:
            let m = xorOnto(f.initiation, delta)
            let authentic = m.count == 148 && word0(m) == 1 && same(m, f.initiation, 8..<116)
            let r = WireGuardIK.openInitiation(identity: f.responder, message: m)
                .flatMap { WireGuardIK.authenticate($0, staticStatic: f.staticStatic, initiator: f.initiatorKey) }
            check((r != nil) == authentic, authentic ? "authentic WireGuard INIT refused" : "forged WireGuard INIT accepted")
        case 1:
            let m = xorOnto(f.response, delta)
            let authentic = m.count == 92 && word0(m) == 2 && same(m, f.response, 8..<60)
            check((WireGuardIK.consumeResponse(m, state: f.state) != nil) == authentic,
                  authentic ? "authentic WireGuard RESP refused" : "forged WireGuard RESP accepted")
            // A failed consume changed nothing.
            check(WireGuardIK.consumeResponse(f.response, state: f.state) != nil, "state changed by a forged RESP")
        default:
            let m = xorOnto(f.initiation, delta)
            let valid = m.count == 148 && same(m, f.initiation, 0..<132)
            check(f.checker.mac1Valid(m) == valid, valid ? "valid mac1 refused" : "forged mac1 accepted")
        }
    } seeds: {
        [[0] + [UInt8](repeating: 0, count: 148), [1] + [UInt8](repeating: 0, count: 92), [2] + [UInt8](repeating: 0, count: 148)]
    },
]
